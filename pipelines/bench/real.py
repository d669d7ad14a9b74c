"""``skedit bench real``: skedit and every baseline on a real model, on facts it really knows.

    skedit bench real --model smollm2-135m --facts known_facts.json --edits 60 --out F.json

1. Which facts of the known-facts file (ROME's layout) the model knows (greedy completion).
2. Counterfactual edits of ``--edits`` of them (``data.real_facts``), chosen so that their
   neighbourhood prompts name subjects the batch does not edit. skedit sees only the requested
   rewrites (``edits.json``); the paraphrase and neighbourhood prompts (``heldout.json``) are
   held out for the evaluation.
3. skedit: the whole ``skedit run`` (agents with auto-approval, teacher, training, evaluation)
   with the model's recipe (``pipelines/recipes/<model>.yaml``); its seconds per edit are the
   run's wall time over the number of edits.
4. Every method on the held-out probes, one at a time (seconds and peak memory each), in the
   harness of ``skedit eval --probes``: a probe counts only where the base model answered it as
   the fact says; probes the student trained on are left out of every method's score. Each
   method's result is saved as it finishes (``work/methods/NAME.json``): an interrupted
   benchmark run again measures only what is missing.
5. A table (markdown) and JSON; ``--readme FILE`` replaces the table between the markers
   ``<!-- bench-real:NAME -->`` and ``<!-- /bench-real:NAME -->`` in FILE (NAME: the model's
   name, or its folder's name).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

from skedit.prompts.errors import SkeditError
from skedit.prompts.io import atomic_write_json, atomic_write_text

METHODS = ("skedit", "base", "prompt", "ft-l", "ft-m", "lora", "rome", "memit", "alphaedit")
COLUMNS = (("edit_success", "edit"), ("paraphrase", "paraphrase"), ("locality", "neighbourhood"))


def recipe_for(model: str, model_path: str, given: str | None) -> str:
    """``given``, else the recipe named like the model (``smollm2-135m``), else its family's."""
    from skedit.pipelines.run.recipes import shipped_recipes

    if given:
        return given
    if model in shipped_recipes():
        return model
    config = Path(model_path) / "config.json"
    family = json.loads(config.read_text())["model_type"] if config.is_file() else None
    family = {"gemma3_text": "gemma3"}.get(family, family)
    if family in shipped_recipes():
        return family
    raise SkeditError(
        f"no recipe for {model}",
        field="--recipe",
        hint=f"give one: --recipe FILE.yaml or one of {', '.join(shipped_recipes())}",
    )


def build_edits(model_path: str, facts: Path, n: int, work: Path, seed: int) -> dict:
    """Steps 1-2: ``work/known.json`` (cached per model), ``work/edits.json`` (rewrites only),
    ``work/heldout.json`` (the same edits with their held-out prompts)."""
    from skedit.pipelines.data.real_facts import (
        counterfactuals,
        known_mask,
        read_known_facts,
        rewrites_only,
        select_batch,
    )
    from skedit.sft.modelops import load_model

    records = read_known_facts(facts)
    key = {"model": str(model_path), "facts": str(facts.resolve()), "n_records": len(records)}
    cache = work / "known.json"
    known_ids = None
    if cache.exists():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            known_ids = set(saved["known_ids"])
    t0 = time.perf_counter()
    if known_ids is None:
        model, tok = load_model(model_path)
        mask = known_mask(model, tok, records)
        known_ids = {r["known_id"] for r, k in zip(records, mask, strict=True) if k}
        atomic_write_json(cache, {"key": key, "known_ids": sorted(known_ids)})
        del model
    known = [r for r in records if r["known_id"] in known_ids]
    candidates = counterfactuals(known, records, seed=seed)
    if len(candidates) < n:
        raise SkeditError(
            f"the model knows {len(known)} of {len(records)} facts, which give "
            f"{len(candidates)} counterfactual edits; --edits {n} asks for more",
            file=str(facts),
            hint=f"use --edits {len(candidates)} or fewer, or a larger known-facts file",
        )
    batch = select_batch(candidates, n)
    atomic_write_json(work / "heldout.json", batch)
    atomic_write_json(work / "edits.json", rewrites_only(batch))
    return {
        "records": len(records),
        "known": len(known),
        "candidates": len(candidates),
        "edits": len(batch),
        "known_seconds": round(time.perf_counter() - t0, 1),
    }


def names_in(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    """The comma-separated names of ``text``, each one of ``allowed``."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in allowed]
    if unknown:
        raise SkeditError(
            f"unknown name(s) for {flag}: {', '.join(unknown)}",
            field=flag,
            hint=f"choose from {', '.join(allowed)}",
        )
    return names


def prepare(args: argparse.Namespace) -> tuple[Path, Path, str, str]:
    """``(out, work, model_path, recipe)`` of a real-model benchmark; ``work`` is created."""
    from skedit.sft.modelops import check_model_path

    out = Path(args.out)
    work = Path(args.work) if args.work else out.with_name(out.stem + "_work")
    work.mkdir(parents=True, exist_ok=True)
    model_path = check_model_path(args.model)
    return out, work, model_path, recipe_for(args.model, model_path, args.recipe)


def recipe_editors(recipe: str) -> dict:
    """The baselines' settings of a recipe (its ``ft-m:``, ``rome:``, ... sections)."""
    from skedit.pipelines.run.config import load_config
    from skedit.pipelines.run.recipes import recipe_path

    return load_config(recipe_path(recipe)).editors


def skedit_run(
    model_path: str, recipe: str, work: Path, seed: int, agents: dict | None = None
) -> dict:
    """Step 3: the whole ``skedit run`` (agents to evaluation) with auto-approval; ``agents``:
    settings of the agent stage to change from the recipe's (e.g. the backend)."""
    from skedit.pipelines.run.config import load_config
    from skedit.pipelines.run.orchestrate import run_pipeline
    from skedit.pipelines.run.recipes import recipe_path

    config = load_config(recipe_path(recipe))
    config.model = model_path
    config.seed = seed
    if agents:
        config.sections["agents"] = dataclasses.replace(config.section("agents"), **agents)
    t0 = time.perf_counter()
    outcome = run_pipeline(
        work / "run", edits_path=work / "edits.json", config=config, auto_approve=True
    )
    if outcome.status != "done":
        raise SkeditError(f"skedit run ended in state {outcome.status!r}", file=str(work / "run"))
    stages = {k: dict(v) for k, v in outcome.stages.items()}
    return {
        "stages": stages,
        "seconds": round(sum(float(v.get("seconds", 0.0)) for v in stages.values()), 1),
        "wall_seconds_this_call": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": max((float(v.get("peak_rss_mb", 0.0)) for v in stages.values()), default=0),
        "editors": config.editors,
    }


def evaluate_methods(run_dir: Path, methods: list[str], heldout: Path, editors: dict, seed: int):
    """Step 4: each method measured alone on the held-out probes (seconds, peak memory)."""
    from skedit.pipelines.eval.harness import evaluate_run
    from skedit.pipelines.eval.heldout import heldout_probes
    from skedit.pipelines.eval.report import write_report
    from skedit.pipelines.eval.runs import load_run, trained_prompts
    from skedit.pipelines.run.memory import PeakMemory, rss_mb
    from skedit.sft.modelops import load_model

    data = load_run(run_dir)
    model, tok = load_model(data.base_path)
    kept = heldout_probes(model, tok, data.edits, heldout)
    del model
    merged: dict = {"methods": {}, "rows": {}}
    cost: dict[str, dict] = {}
    done = run_dir.parent / "methods"  # one file per measured method: a rerun skips them
    trained = trained_prompts(run_dir)  # read once, not once per method
    model_file = run_dir / "model" / "model.safetensors"
    for name in methods:
        key = _method_key(name, kept.probes, editors.get(name), seed, trained, model_file)
        saved = done / f"{name}.json"
        if saved.is_file() and json.loads(saved.read_text("utf-8")).get("key") == key:
            res = json.loads(saved.read_text("utf-8"))
            print(f"{name}: measured before, reused ({saved})", flush=True)
        else:
            before = rss_mb()
            with PeakMemory() as mem:
                out = evaluate_run(
                    run_dir,
                    baselines=[] if name == "skedit" else [name],
                    students=None if name == "skedit" else {},
                    probes=kept.probes,
                    hparams=editors,
                    seed=seed,
                    write=False,
                )
            res = {
                "key": key,
                "metrics": out["methods"][name],
                "rows": out["rows"][name],
                "protocol": out["protocol"],
                "cost": {
                    "edit_seconds": out["methods"][name].get("edit_seconds"),
                    "peak_rss_mb": round(mem.peak, 1),
                    "peak_rss_above_start_mb": round(max(mem.peak - before, 0.0), 1),
                },
            }
            atomic_write_json(saved, res)
        merged["methods"][name] = res["metrics"]
        merged["rows"][name] = res["rows"]
        merged.setdefault("protocol", res["protocol"])
        merged["protocol"].setdefault("hparams", {}).update(res["protocol"].get("hparams", {}))
        cost[name] = res["cost"]
    merged["protocol"]["methods"] = list(methods)
    merged["protocol"]["probes_file"] = kept.summary()
    write_report(run_dir, merged)
    return merged, cost, kept.summary()


def _method_key(name: str, probes, hparams, seed: int, trained: set[str], model) -> str:
    """What one method's scores depend on: a saved result with the same key is reused. A
    baseline's depends on the probes, its settings and which probes the run trained on
    (``trained``: they are reported apart), not on the rest of the transfer set: a new skedit
    recipe reuses them. skedit's also depends on its trained ``model`` file."""
    from skedit.pipelines.run.rundir import hash_inputs

    files = [model] if name == "skedit" else []
    probe_keys = [(p.kind, p.edit_id, p.prompt, p.expected, p.prompt in trained) for p in probes]
    return hash_inputs(name, hparams, seed, probe_keys, files=files)


def _score(method: dict, key: str) -> dict:
    """One metric's score: on the probes the student never trained on, except edit success
    (the edit prompt is what every method trains on)."""
    source = method if key == "edit_success" else (method.get("held_out") or method)
    entry = source.get(key) or {}
    return {"mean": entry.get("mean"), "n": entry.get("n", 0), "ci": entry.get("ci")}


def table_rows(metrics: dict, cost: dict, n_edits: int, skedit_seconds: float) -> list[dict]:
    rows = []
    for name, m in metrics["methods"].items():
        row = {"method": name, **{col: _score(m, key) for key, col in COLUMNS}}
        row["fluency"] = (m.get("fluency") or {}).get("mean")
        secs = skedit_seconds if name == "skedit" else cost[name]["edit_seconds"] or 0.0
        row["seconds_per_edit"] = round(secs / max(n_edits, 1), 2)
        row["peak_rss_mb"] = cost[name]["peak_rss_mb"]
        rows.append(row)
    return rows


def render_table(rows: list[dict]) -> str:
    def cell(x: dict) -> str:
        return "–" if x["mean"] is None else f"{x['mean']:.2f} ({x['n']})"

    head = "| method | edit | paraphrase | neighbourhood | fluency | s/edit | peak RSS MB |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        flu = "–" if r["fluency"] is None else f"{r['fluency']:.2f}"
        lines.append(
            f"| {r['method']} | {cell(r['edit'])} | {cell(r['paraphrase'])} | "
            f"{cell(r['neighbourhood'])} | {flu} | {r['seconds_per_edit']:.2f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def checks(rows: list[dict]) -> dict:
    """The real-model issue's floors, on the held-out probes."""
    by = {r["method"]: r for r in rows}
    sk = by.get("skedit")
    if sk is None:
        return {}

    def mean(method: str, col: str) -> float | None:
        return by[method][col]["mean"] if method in by else None

    out = {
        "edit_success>=0.90": (mean("skedit", "edit") or 0) >= 0.90,
        "paraphrase>=0.70": (mean("skedit", "paraphrase") or 0) >= 0.70,
        "neighbourhood>=0.90": (mean("skedit", "neighbourhood") or 0) >= 0.90,
        "seconds_per_edit<=20": sk["seconds_per_edit"] <= 20,
    }
    para = mean("skedit", "paraphrase") or 0
    if (ftm := mean("ft-m", "paraphrase")) is not None:
        out["paraphrase>ft-m"] = para > ftm
    for m in ("rome", "memit"):
        if (other := mean(m, "paraphrase")) is not None:
            out[f"paraphrase>={m}-0.05"] = para >= other - 0.05
    if (ftm_loc := mean("ft-m", "neighbourhood")) is not None:
        out["neighbourhood>=ft-m"] = (mean("skedit", "neighbourhood") or 0) >= ftm_loc
    return out


def splice_readme(readme: Path, marker: str, text: str) -> None:
    """Replace the text between ``<!-- MARKER -->`` and ``<!-- /MARKER -->`` (MARKER:
    ``bench-real:MODEL``, ...)."""
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    body = readme.read_text(encoding="utf-8")
    if start not in body or end not in body:
        raise SkeditError(
            f"no markers {start} … {end} in the file",
            file=str(readme),
            hint="add the two markers (each on its own line) where the table should go",
        )
    head, rest = body.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write_text(readme, f"{head}{start}\n{text}\n{end}{tail}")


def command_line(args: argparse.Namespace) -> str:
    parts = ["skedit bench real", f"--model {args.model}", f"--facts {args.facts}"]
    parts += [f"--edits {args.edits}", f"--out {args.out}"]
    if args.recipe:
        parts.append(f"--recipe {args.recipe}")
    if args.methods != ",".join(METHODS):
        parts.append(f"--methods {args.methods}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    methods = names_in(args.methods, METHODS, "--methods")
    out, work, model_path, recipe = prepare(args)
    t0 = time.perf_counter()
    data = build_edits(model_path, Path(args.facts), args.edits, work, args.seed)
    print(
        f"{args.model}: knows {data['known']} of {data['records']} facts; "
        f"{data['edits']} counterfactual edits in {work / 'edits.json'}",
        flush=True,
    )
    skedit = skedit_run(model_path, recipe, work, args.seed) if "skedit" in methods else None
    # the baselines' settings are the recipe's, whether or not skedit runs this time
    editors = skedit["editors"] if skedit else recipe_editors(recipe)
    metrics, cost, kept = evaluate_methods(
        work / "run", methods, work / "heldout.json", editors, args.seed
    )
    rows = table_rows(metrics, cost, data["edits"], skedit["seconds"] if skedit else 0.0)
    table = render_table(rows)
    result = {
        "command": command_line(args),
        "model": args.model,
        "model_path": str(model_path),
        "recipe": recipe,
        "facts": str(args.facts),
        "data": data,
        "heldout": kept,
        "skedit_run": skedit,
        "table": rows,
        "checks": checks(rows),
        "cost": cost,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "run_dir": str(work / "run"),
        "note": "scores are on held-out probes (never in the transfer set); a probe counts only "
        "where the base model answered it as the fact says before the edit",
    }
    atomic_write_json(out, result)
    print(table)
    print(json.dumps(result["checks"], indent=1))
    print(f"\nwritten: {out}  (report: {work / 'run' / 'report.html'})")
    if args.readme:
        text = (
            f"`{result['command']}` ({data['edits']} edits, {kept['kept'].get('rephrase', 0)} "
            f"paraphrase and {sum(v for k, v in kept['kept'].items() if k not in ('edit', 'rephrase'))}"
            " neighbourhood probes kept):\n\n" + table
        )
        splice_readme(Path(args.readme), f"bench-real:{Path(args.model).name}", text)
    return 0
