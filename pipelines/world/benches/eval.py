"""Benchmark: skedit (sft and kd) against base, PROMPT, FT-L, FT-M and LoRA on the world model.

    skedit bench eval --edits 100 --out bench_eval.json

Builds (or reuses) the synthetic world, runs the agents on ``--edits`` benchmark edits with
auto-approval, builds the transfer set once, trains one student per method, evaluates every
method in one harness (``evaluate_run``) with retention fine-tuning, writes the run's report and
a JSON summary with the issue's acceptance checks, and prints one table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from skedit.agents.backends.layout import layout_text
from skedit.pipelines.run.rundir import RunDir
from skedit.prompts import APPROVED
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import atomic_write_json, read_jsonl, write_jsonl
from skedit.prompts.schema import DensePrompt, Edit, Probe, TransferExample

METRIC_KEYS = ("edit_success", "paraphrase", "portability", "locality")


def held_out_split(edit: Edit) -> Edit:
    """The edit as the agents see it: every other rephrase, portability and locality probe."""
    return edit.model_copy(
        update={
            "rephrases": edit.rephrases[::2],
            "portability": edit.portability[::2],
            "locality": edit.locality[::2],
        }
    )


def _simple_prompts(edits: list[Edit], run_dir: Path, model_dir: Path, per_prompt: int = 8):
    """Probes = the edits' own; prompts = compact statements, ``per_prompt`` facts each."""
    from skedit.prompts.answers import first_answer
    from skedit.sft.modelops import generate, load_model

    model, tok = load_model(model_dir)
    probes = [p for e in edits for p in e.probes()]
    loc = [p for p in probes if p.kind == "locality" and not p.expected]
    for p, g in zip(loc, generate(model, tok, [p.prompt for p in loc]), strict=True):
        p.expected = first_answer(g)
    prompts = []
    for i in range(0, len(edits), per_prompt):
        chunk = edits[i : i + per_prompt]
        text = layout_text(chunk, layout="statements")
        prompts.append(DensePrompt(edit_ids=[e.id for e in chunk], text=text, status="approved"))
    write_jsonl(RunDir(run_dir).edits, edits)
    write_jsonl(RunDir(run_dir).probes, probes)
    write_jsonl(RunDir(run_dir).prompts, prompts)


def prepare_run(args, world, edits: list[Edit], run_dir: Path) -> dict:
    """Agents (or simple prompts), transfer set, one student per method. Returns timings."""
    from skedit.sft.config import TrainConfig
    from skedit.sft.modelops import load_model
    from skedit.sft.train import train_student
    from skedit.sft.transfer import build_transfer_set, write_transfer_set

    timings: dict[str, float] = {}
    run_dir.mkdir(parents=True, exist_ok=True)
    from skedit.pipelines.world.demo import facts_per_prompt

    layout = "tables" if args.prompts == "agents" else "statements"
    args.facts_per_prompt = facts_per_prompt(args.facts_per_prompt, world.report, layout)
    if not RunDir(run_dir).prompts.exists():
        t0 = time.perf_counter()
        if args.prompts == "agents":
            from skedit.agents.config import AgentsConfig
            from skedit.agents.workflow import run_agents

            state = run_agents(
                edits,
                run_dir,
                model_path=str(world.model_dir),
                config=AgentsConfig(max_facts=args.facts_per_prompt, layout="tables"),
                auto_approve=True,
                progress=True,
            )
            if state != "done":
                raise SkeditError(f"agents ended in state {state!r}, expected 'done'")
        else:
            _simple_prompts(edits, run_dir, world.model_dir, per_prompt=args.facts_per_prompt)
        timings["prompts_seconds"] = round(time.perf_counter() - t0, 1)
    cfg_path = run_dir / "config.yaml"
    config = yaml.safe_load(cfg_path.read_text()) if cfg_path.exists() else {}
    config = config or {}
    config.setdefault("model", str(world.model_dir))
    if "training" not in config and args.recipe:
        from skedit.pipelines.run.recipes import load_recipe

        recipe = load_recipe(args.recipe)
        if recipe.get("training"):
            config["training"] = recipe["training"]
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))

    prompts = read_jsonl(RunDir(run_dir).prompts, DensePrompt)
    if not any(p.status in APPROVED for p in prompts):
        accs = [c.teacher_edit_accuracy for p in prompts if (c := p.last_critique)]
        accs = [a for a in accs if a is not None]
        raise SkeditError(
            f"no approved prompt: the agents rejected all {len(prompts)} prompts"
            + (f" (mean teacher edit accuracy {sum(accs) / len(accs):.2f})" if accs else ""),
            file=str(RunDir(run_dir).prompts),
            hint="the base model cannot read these facts in context, so it cannot teach them; "
            "see the world's in-context report, or use --prompts simple to measure anyway",
        )
    probes = read_jsonl(RunDir(run_dir).probes, Probe)
    training = dict(config.get("training") or {})
    if not RunDir(run_dir).transfer.exists():
        t0 = time.perf_counter()
        model, tok = load_model(world.model_dir)
        rows = build_transfer_set(
            model, tok, prompts, probes, config=TrainConfig.from_dict(training)
        )
        write_transfer_set(run_dir, rows)
        timings["teacher_seconds"] = round(time.perf_counter() - t0, 1)
    rows = read_jsonl(RunDir(run_dir).transfer, TransferExample)
    for method in args.methods.split(","):
        out = run_dir / f"model-{method}"
        if (out / "config.json").exists():
            continue
        cfg = TrainConfig.from_dict({**training, "method": method})
        res = train_student(world.model_dir, rows, cfg, out)
        timings[f"train_{method}_seconds"] = round(res.train_seconds, 1)
    return timings


def _cell(e: dict | None) -> dict | None:
    if not e or e.get("mean") is None:
        return None
    return {"mean": round(e["mean"], 4), "ci": [round(x, 4) for x in e["ci"]], "n": e["n"]}


def summarise(metrics: dict, students: list[str]) -> dict:
    """The one table, and the issue's acceptance checks computed from it.

    Checks are computed twice: on all probes, and on held-out probes (those the student never
    trained on; where a method has none of a kind, e.g. edit prompts, its all-probe value).
    """
    methods = metrics["methods"]
    table = {
        name: {k: _cell(res.get(k)) for k in (*METRIC_KEYS, "fluency", "perplexity")}
        | {
            f"{k}_token_accuracy": _cell((res.get(k) or {}).get("token_accuracy"))
            for k in METRIC_KEYS
        }
        for name, res in methods.items()
    }

    def mean(name, key, view):
        res = methods.get(name) or {}
        held = (res.get("held_out") or {}).get(key) or {}
        e = held if view == "held_out" and held.get("n") else (res.get(key) or {})
        return e.get("mean")

    checks: dict[str, dict] = {}
    for s in students:
        c = {}
        for view in ("held_out", "all"):
            tag = "" if view == "held_out" else " [all probes]"
            for b in ("ft-l", "ft-m", "lora"):
                if b in methods:
                    for k in ("locality", "portability"):
                        mine, theirs = mean(s, k, view), mean(b, k, view)
                        if mine is not None and theirs is not None:
                            c[f"{k} > {b}{tag}"] = mine > theirs
            prompt_port, port = mean("prompt", "portability", view), mean(s, "portability", view)
            if prompt_port and port is not None:
                c[f"portability / PROMPT{tag}"] = round(port / prompt_port, 3)
                c[f"portability >= 90% of PROMPT{tag}"] = port / prompt_port >= 0.9
            loc = mean(s, "locality", view)
            if loc is not None:
                c[f"locality{tag}"] = round(loc, 4)
                c[f"locality >= 0.97{tag}"] = loc >= 0.97
        checks[s] = c
    # retention: edits still right after the unrelated fine-tuning, skedit against FT-M, in
    # absolute terms (a ratio flatters a method that had few edits to lose)
    ret = metrics.get("retention") or {}
    curves = ret.get("curves") or {}
    n = (methods.get("ft-m", {}).get("edit_success") or {}).get("n")
    if "ft-m" in curves:
        theirs = curves["ft-m"][-1]["edit_success"]
        for s in students:
            if s in curves:
                mine = curves[s][-1]["edit_success"]
                checks[s]["edit success after retention"] = round(mine, 3)
                checks[s]["edit success after retention (ft-m)"] = round(theirs, 3)
                checks[s]["retention: more edits kept than ft-m by"] = round(mine - theirs, 3)
                if n:
                    checks[s]["retention: edits kept (of n)"] = [
                        round(mine * n),
                        round(theirs * n),
                        n,
                    ]
                checks[s]["keeps more edits than ft-m after retention"] = mine > theirs
    return {"table": table, "checks": checks}


def _cost_per_edit(metrics: dict, timings: dict, students, n_edits: int) -> None:
    """``seconds_per_edit`` of each method, measured in this run: a student's is its agents +
    teacher + training time (a resumed run reuses finished stages: then it is not measured);
    a baseline's is its editing time; base and PROMPT edit no weights."""
    shared = timings.get("prompts_seconds", 0.0) + timings.get("teacher_seconds", 0.0)
    for name, res in metrics["methods"].items():
        method = name.removeprefix("skedit-")
        if name in students:
            train = timings.get(f"train_{method}_seconds")
            seconds = shared + train if train is not None else None
        elif name in ("base", "prompt"):
            seconds = None
        else:
            seconds = res.get("edit_seconds")
        if seconds is not None and n_edits:
            res["seconds_per_edit"] = round(seconds / n_edits, 4)


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    from skedit.pipelines.data.datasets import load_edits
    from skedit.pipelines.eval.harness import evaluate_run
    from skedit.pipelines.eval.report import terminal_table, write_report
    from skedit.pipelines.world.build import DEFAULT_SEED, build_world
    from skedit.pipelines.world.hooks import eval_hook_for

    t_start = time.perf_counter()
    if args.world:
        from skedit.pipelines.world.build import load_world_build

        world = load_world_build(args.world)
    else:
        world = build_world(size=args.size, seed=DEFAULT_SEED, threads=args.threads)
    edits = load_edits(world.benchmark[args.split]).edits[: args.edits]
    # the agents and the student see every other rephrase / portability / locality probe;
    # the rest are held out, so generalisation is measured on probes nobody trained on
    eval_probes = [p for e in edits for p in e.probes()]
    train_edits = [held_out_split(e) for e in edits]
    out = Path(args.out)
    run_dir = (
        Path(args.run_dir) if args.run_dir else out.with_suffix("").parent / (out.stem + "_run")
    )
    timings = prepare_run(args, world, train_edits, run_dir)
    students = {f"skedit-{m}": run_dir / f"model-{m}" for m in args.methods.split(",")}
    baselines = [b for b in args.baselines.split(",") if b]
    t0 = time.perf_counter()
    metrics = evaluate_run(
        run_dir,
        baselines=baselines,
        sequential=args.sequential or None,
        retention=args.retention or None,
        heldout=None,  # the world's: held-out text for perplexity, new facts for retention
        students=students,
        retention_methods=[*students, "ft-m"],
        retention_lr=args.retention_lr,
        probes=eval_probes,
        hook_for=eval_hook_for,
        seed=args.seed,
        write=False,
    )
    timings["eval_seconds"] = round(time.perf_counter() - t0, 1)
    timings["total_seconds"] = round(time.perf_counter() - t_start, 1)
    _cost_per_edit(metrics, timings, students, len(edits))
    paths = write_report(run_dir, metrics)
    summary = summarise(metrics, list(students))
    result = {
        "benchmark": "bench_eval",
        "world": {"size": args.size, "dir": str(world.world_dir), "split": args.split},
        "edits": len(edits),
        "prompts": args.prompts,
        "probes": {
            "evaluated": len(eval_probes),
            "shown to agents/student": sum(len(e.probes()) for e in train_edits),
            "rule": "every other rephrase, portability and locality probe of each edit is "
            "held out of the agents' input and the transfer set",
        },
        "run_dir": str(run_dir),
        "report": str(paths["html"]),
        "protocol": metrics["protocol"],
        **summary,
        "held_out": {
            n: {k: _cell(v.get(k)) for k in METRIC_KEYS}
            for n, r in metrics["methods"].items()
            if (v := r.get("held_out"))
        },
        "retention": {k: v for k, v in (metrics.get("retention") or {}).items()},
        "sequential": metrics.get("sequential"),
        "timings": timings,
    }
    atomic_write_json(out, result)
    print(terminal_table(metrics))
    print(json.dumps(summary["checks"], indent=2))
    print(f"\nwrote {out} and {paths['html']}")
    return 0
