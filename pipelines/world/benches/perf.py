"""``skedit bench``: cost per stage for 10, 100 and 1000 edits, and the quality table.

Each size runs as its own ``skedit run`` process so that wall time and peak memory of one size
are not mixed with another's; the numbers come from the run's ``stages.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from skedit.pipelines.run.rundir import STAGES, RunDir
from skedit.pipelines.world.demo import compact_table, pick_edits, recipe, reliable_facts
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import atomic_write_json, atomic_write_text


def _inputs(world, work: Path, n: int, baselines, critic: bool) -> tuple[Path, Path]:
    """The edits file and run config of the ``n``-edit run: the demo's settings (the world
    recipes, a reliable density)."""
    edits = work / f"edits-{n}.jsonl"
    text = pick_edits(world.benchmark["test"], n)
    if text.count("\n") < n:
        raise SkeditError(
            f"the world benchmark has only {text.count(chr(10))} edits",
            hint=f"use sizes up to that; asked for {n}",
        )
    atomic_write_text(edits, text)
    cfg = work / f"config-{n}.yaml"
    run_cfg: dict = {
        "model": str(world.model_dir),
        "agents": {**recipe("world")["agents"], "max_facts": reliable_facts(world.report)},
        "training": recipe("world-cpu")["training"],
        "evaluation": {"baselines": baselines or ["base", "prompt"]},
    }
    if not critic:
        run_cfg["agents"].update(min_edit_accuracy=0.0, min_locality=0.0)
    atomic_write_text(cfg, yaml.safe_dump(run_cfg))
    return edits, cfg


def run_bench(
    *,
    sizes: list[int],
    out: Path,
    work: Path,
    world_size: str = "small",
    baselines: list[str] | None = None,
    critic: bool = False,
) -> dict:
    """Run ``skedit run`` once per size and collect its stage records.

    ``critic=False`` (default) approves every prompt the agents write, whatever the critic
    measured, so that every stage has the same work at every size: this measures cost. The
    critic still probes the teacher (its time is counted) and its figures stay in the runs.
    """
    from skedit.pipelines.world.build import default_world

    world = default_world(size=world_size)
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "world": str(world.model_dir),
        "critic_gates_prompts": critic,
        "sizes": {},
        "machine": {"cpus": os.cpu_count(), "torch_threads": os.environ.get("OMP_NUM_THREADS")},
    }
    for n in sizes:
        run_dir = work / f"n{n}"
        edits, cfg = _inputs(world, work, n, baselines, critic)
        cmd = [
            sys.executable,
            "-m",
            "skedit.pipelines.cli",
            "run",
            str(edits),
            "--run",
            str(run_dir),
            "--config",
            str(cfg),
            "--auto-approve",
            "--force",
        ]
        print(f"bench: {n} edits …", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        if subprocess.run(cmd).returncode != 0:
            raise SkeditError(
                f"the bench run for {n} edits failed (its messages are above)", file=str(run_dir)
            )
        wall = time.perf_counter() - t0
        stages = json.loads(RunDir(run_dir).stages_file.read_text())
        metrics = json.loads(RunDir(run_dir).metrics.read_text())
        per = {
            s: {
                "seconds": stages[s]["seconds"],
                "peak_rss_mb": stages[s]["peak_rss_mb"],
                "seconds_per_edit": round(stages[s]["seconds"] / n, 4),
            }
            for s in STAGES
            if s in stages
        }
        results["sizes"][str(n)] = {
            "edits": n,
            "wall_seconds": round(wall, 1),
            "seconds_per_edit": round(wall / n, 3),
            "stages": per,
            "quality": metrics.get("methods", {}),
        }
        atomic_write_json(out, results)
    return results


def format_bench(results: dict) -> str:
    lines = [f"{'edits':>6} {'stage':<8} {'seconds':>9} {'s/edit':>8} {'peak MB':>9}"]
    for n, r in results["sizes"].items():
        for s, v in r["stages"].items():
            lines.append(
                f"{n:>6} {s:<8} {v['seconds']:>9.1f} {v['seconds_per_edit']:>8.3f} "
                f"{v['peak_rss_mb']:>9.0f}"
            )
        lines.append(f"{n:>6} {'total':<8} {r['wall_seconds']:>9.1f} {r['seconds_per_edit']:>8.3f}")
    last = list(results["sizes"].values())[-1]
    lines += [
        "",
        f"quality at {last['edits']} edits:",
        compact_table({"methods": last["quality"]}, methods=list(last["quality"])),
    ]
    return "\n".join(lines)
