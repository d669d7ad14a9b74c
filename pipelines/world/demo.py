"""``skedit demo``: the whole method on the synthetic world, in minutes, on a laptop CPU."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from skedit.pipelines.run.config import parse_config
from skedit.pipelines.run.orchestrate import run_pipeline
from skedit.pipelines.run.rundir import RunDir
from skedit.prompts.io import atomic_write_text

DEMO_METHODS = ("base", "prompt", "ft-m", "skedit")
# Seconds each stage of a 50-edit demo on a fresh cache took on 2 busy cores of an AMD EPYC
# (Zen 4; README); the time-left estimate scales them by how fast the stages so far ran here.
STAGE_SECONDS = {"world": 2.0, "agents": 13.0, "teacher": 20.0, "train": 7.0, "eval": 10.0}
DEMO_METRICS = ("edit_success", "paraphrase", "locality", "portability")


def recipe(name: str) -> dict:
    """A recipe shipped with skedit (``pipelines/recipes/<name>.yaml``) as a mapping."""
    from skedit.pipelines.run.recipes import load_recipe

    return load_recipe(name)


def reliable_facts(report: dict, floor: float = 0.99, layout: str = "tables") -> int:
    """The largest k of the world report's in-context curve at which the teacher gives every
    kind of answer the student learns from (edit, paraphrase, portability, locality) at
    ``floor`` or better: the student learns the teacher's mistakes too. Edit accuracy alone is
    not enough (a world that read four facts at .97 answered two-hop questions through them at
    .87, and the demo's student then at .83), and .95 is too loose (16 facts at .96-.975 gave
    the demo's student .96/.94/.94 edit/paraphrase/portability against 1.00 with one fact;
    .98 too: the 3000-step world reads 8 facts in tables at .98-.985 and 4 at .997-1.00, and
    its demo's teacher gave .94/.93/.91 edit/paraphrase/portability at 8, .98/.96/.97 at 4).
    The curve is the one of the writer's ``layout`` (relation tables unless told otherwise)."""
    tables = report.get("in_context_tables") if layout == "tables" else None
    curve = tables or report.get("in_context", {})  # a world built before tables has none
    kinds = ("edit", "paraphrase", "portability", "locality")
    ok = [int(k) for k, v in curve.items() if min(v.get(x, 0.0) for x in kinds) >= floor]
    return max(ok, default=1)


def facts_per_prompt(asked: int, report: dict, layout: str = "tables") -> int:
    """``asked`` when positive (a ``--facts-per-prompt`` option), else :func:`reliable_facts`."""
    return asked if asked > 0 else reliable_facts(report, layout=layout)


def pick_edits(benchmark: Path, n: int) -> str:
    """The first ``n`` edits of a benchmark file (deterministic), as JSONL text."""
    lines = []
    with open(benchmark, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                lines.append(line if line.endswith("\n") else line + "\n")
            if len(lines) == n:
                break
    return "".join(lines)


def compact_table(metrics: dict, methods=DEMO_METHODS, keys=DEMO_METRICS) -> str:
    """A before/after table: one row per method, greedy exact match with 95% CIs."""
    head = f"{'method':<10}" + "".join(f"{k:>22}" for k in keys)
    rows = [head, "-" * len(head)]
    for m in methods:
        res = metrics.get("methods", {}).get(m)
        if not res:
            continue
        cells = []
        for k in keys:
            v = res.get(k)
            if not v or v.get("mean") is None:
                cells.append(f"{'—':>22}")
                continue
            ci = v.get("ci") or [None, None]
            band = f" [{ci[0]:.2f},{ci[1]:.2f}]" if ci[0] is not None else ""
            cells.append(f"{v['mean']:>8.2f}{band:>14}")
        rows.append(f"{m:<10}" + "".join(cells))
    return "\n".join(rows)


def clock(seconds: float) -> str:
    """``1 min 05 s`` / ``42 s``."""
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


class StageClock:
    """Says, as each stage starts, how long the demo has run and about how long is left: the
    remaining stages' typical seconds (``STAGE_SECONDS``, per 50 edits) times how much slower
    or faster than typical the finished stages ran on this machine."""

    def __init__(self, n_edits: int, *, start: float, say=None, now=time.perf_counter) -> None:
        self.scale = max(n_edits, 1) / 50
        self.start, self.now = start, now
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def __call__(self, stage: str) -> None:
        names = list(STAGE_SECONDS)
        elapsed = self.now() - self.start
        typical_done = sum(STAGE_SECONDS[n] for n in names[: names.index(stage)]) * self.scale
        pace = min(max(elapsed / typical_done, 0.5), 5.0) if typical_done else 1.0
        left = sum(STAGE_SECONDS[n] for n in names[names.index(stage) :]) * self.scale * pace
        self.say(f"demo: {clock(elapsed)} so far, about {clock(left)} to go")


def run_demo(
    *,
    run_dir: str | os.PathLike = "runs/demo",
    n_edits: int = 50,
    size: str = "small",
    force: bool = False,
    critic: bool = False,
    progress: bool = True,
) -> dict:
    """Edit ``n_edits`` world facts end to end. ``critic=False`` approves every prompt the
    agents write (the critic's measurements are still taken and reported), so the table shows
    what distillation does even where the teacher falls short of the critic's thresholds."""
    from skedit.pipelines.world.build import default_world
    from skedit.pipelines.world.hooks import eval_hook_for

    t0 = time.perf_counter()
    stage_clock = StageClock(n_edits, start=t0) if progress else None
    if stage_clock:
        stage_clock("world")
    world = default_world(size=size, progress=progress)
    run_dir = Path(run_dir)
    edits_file = run_dir.parent / f".{run_dir.name}-edits.jsonl"
    picked = pick_edits(world.benchmark["test"], n_edits)
    atomic_write_text(edits_file, picked)
    settings: dict = {
        "model": str(world.model_dir),
        # as many facts per prompt as this teacher reads reliably (its in-context curve)
        "agents": {**recipe("world")["agents"], "max_facts": reliable_facts(world.report)},
        "training": recipe("world-cpu")["training"],
        "evaluation": {"baselines": ["base", "prompt", "ft-m"]},
    }
    if not critic:
        settings["agents"].update(min_edit_accuracy=0.0, min_locality=0.0)
    config = parse_config(settings)
    outcome = run_pipeline(
        run_dir,
        edits_path=edits_file,
        config=config,
        auto_approve=True,
        force={"all"} if force else None,
        progress=progress,
        on_stage=stage_clock,
        eval_hook_for=eval_hook_for,
    )
    metrics = json.loads(RunDir(outcome.run_dir).metrics.read_text(encoding="utf-8"))
    return {
        "run_dir": str(outcome.run_dir),
        "seconds": round(time.perf_counter() - t0, 1),
        "world": "shipped" if world.report.get("source") == "shipped" else "built",
        "edits": picked.count("\n"),  # fewer than asked when the world has fewer
        "metrics": metrics,
        "report": str((outcome.run_dir / "report.html").resolve()),
    }
