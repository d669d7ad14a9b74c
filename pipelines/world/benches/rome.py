"""Benchmark ROME, MEMIT and AlphaEdit on the synthetic world model.

    skedit bench rome --edits 100 --out bench_rome.json

Takes the first N edits of the world's test benchmark, applies each method to a fresh copy of
the world model (all edits in one call: ROME one after another, MEMIT/AlphaEdit as one batch),
and measures them with the evaluation team's ``evaluate_model`` (greedy exact match with
``skedit.prompts.answers.matches`` and teacher-forced token accuracy, bootstrap CIs; locality
against the pre-edit model's own answers). Key statistics are computed once beforehand and
timed apart; "s/edit" is the editing time alone. ``--sequential K`` adds the curve of the same
edits applied in K batches.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from skedit.prompts.io import atomic_write_json, read_jsonl
from skedit.prompts.schema import Edit

METHODS = {
    "rome": ("skedit.pipelines.editors.rome", "apply_rome", "RomeHparams", {}),
    # published ROME: no memory of earlier edits' keys (see recipes/world.yaml)
    "rome-plain": (
        "skedit.pipelines.editors.rome",
        "apply_rome",
        "RomeHparams",
        {"edit_memory": 0.0},
    ),
    "memit": ("skedit.pipelines.editors.memit", "apply_memit", "MemitHparams", {}),
    "alphaedit": ("skedit.pipelines.editors.memit", "apply_alphaedit", "AlphaEditHparams", {}),
}
METRICS = ("edit_success", "paraphrase", "portability", "locality")


def _method(name: str):
    import importlib

    module, fn, hp, overrides = METHODS[name]
    mod = importlib.import_module(module)
    return getattr(mod, fn), getattr(mod, hp), overrides


def _summary(result: dict) -> dict:
    out = {}
    for metric in METRICS:
        r = result[metric]
        out[metric] = {
            "mean": r["mean"],
            "ci": r["ci"],
            "n": r["n"],
            "token_accuracy": r["token_accuracy"]["mean"],
        }
    return out


def _key_stats(model, tok, layers, hp) -> tuple[float, str]:
    """Compute (or read) the key statistics once, so editing times exclude them; returns the
    seconds it took and the corpus's name."""
    from skedit.pipelines.editors.covariance import key_second_moments, load_corpus
    from skedit.pipelines.editors.rome import resolve_corpus

    t0 = time.perf_counter()
    corpus = load_corpus(resolve_corpus(model, tok, hp))
    key_second_moments(
        model,
        tok,
        layers,
        corpus,
        samples=hp.samples,
        max_length=hp.max_length,
        cache_dir=hp.cache_dir,
        progress=hp.progress,
    )
    return time.perf_counter() - t0, corpus.name


def _curve(name: str, apply, hp, base, tok, edits: list[Edit], probes, reference, batches: int):
    """The sequential curve: the method applies the same edits in ``batches`` batches, one
    after another, scored after each against the pre-edit ``reference``."""
    from types import SimpleNamespace

    from skedit.pipelines.eval.sequential import sequential_curve, split_batches

    return sequential_curve(
        lambda m, batch: apply(m, tok, batch, hp),
        base,
        tok,
        SimpleNamespace(probes=probes),
        split_batches(edits, batches),
        reference=reference,
        desc=f"sequential {name}",
    )


def run_bench(
    *,
    n_edits: int = 100,
    size: str = "small",
    cache_dir: str | None = None,
    world_dir: str | None = None,
    methods: list[str] | None = None,
    sequential: int = 0,
    hparams: dict | None = None,
    seed: int = 0,
) -> dict:
    from skedit.pipelines.eval.reference import pre_edit_reference
    from skedit.pipelines.eval.scoring import evaluate_model
    from skedit.pipelines.world.build import DEFAULT_SEED, build_world, load_world_build
    from skedit.pipelines.world.hooks import key_stats_file
    from skedit.sft.modelops import load_model

    torch.manual_seed(seed)
    if world_dir is not None:
        world = load_world_build(world_dir)
        size = str(world.report.get("size", size))
    else:
        world = build_world(size=size, seed=DEFAULT_SEED, cache_dir=cache_dir)
    edits = read_jsonl(world.benchmark["test"], Edit)[:n_edits]
    base, tok = load_model(world.model_dir, device="cpu")
    probes = [p for e in edits for p in e.probes()]
    relations = {e.id: e.relation for e in edits}
    reference = pre_edit_reference(base, tok, probes)

    def measure(model) -> dict:
        res = evaluate_model(model, tok, probes, reference=reference, relations=relations)
        return _summary(res)

    results = {"base": {"metrics": measure(base)}}
    for name in methods or list(METHODS):
        apply, hp_cls, overrides = _method(name)
        given = {**overrides, **(hparams or {}).get(name, {}), "seed": seed}
        given.setdefault("corpus", key_stats_file(world.world_dir))  # the world's own text
        hp = hp_cls(**given)
        layers = [hp.layer] if hasattr(hp, "layer") else list(hp.layers)
        stats_s, corpus = _key_stats(base, tok, layers, hp)
        model = copy.deepcopy(base)
        model.skedit_edit_log = []
        t0 = time.perf_counter()
        apply(model, tok, edits, hp)
        seconds = time.perf_counter() - t0
        log = model.skedit_edit_log
        results[name] = {
            "metrics": measure(model),
            "seconds_total": round(seconds, 2),
            "seconds_per_edit": round(seconds / len(edits), 4),
            "key_stats_seconds": round(stats_s, 2),
            "key_stats_corpus": corpus,
            "value_nll_mean": round(sum(r["nll"] for r in log) / max(1, len(log)), 4),
            "hparams": {k: v for k, v in vars(hp).items() if k not in ("progress", "extra")},
        }
        if sequential:
            curve = _curve(name, apply, hp, base, tok, edits, probes, reference, sequential)
            results[name]["sequential"] = curve
    return {
        "benchmark": "bench_rome",
        "world": {
            "size": size,
            "model_dir": str(world.model_dir),
            "world_dir": str(world.world_dir),
        },
        "edits": len(edits),
        "probes": len(probes),
        "sequential_batches": sequential,
        "torch_threads": torch.get_num_threads(),
        "methods": results,
    }


def format_table(report: dict) -> str:
    head = f"{'method':<10} " + " ".join(f"{m:>22}" for m in METRICS) + f" {'s/edit':>8}"
    lines = [
        f"world {report['world']['size']}, {report['edits']} edits, {report['probes']} probes "
        "(exact match [95% CI] / teacher-forced token accuracy)",
        head,
        "-" * len(head),
    ]
    for name, r in report["methods"].items():
        cells = []
        for metric in METRICS:
            m = r["metrics"][metric]
            lo, hi = m["ci"] if m["ci"] else (float("nan"), float("nan"))
            cells.append(f"{m['mean']:.2f} [{lo:.2f},{hi:.2f}] /{m['token_accuracy']:.2f}")
        per_edit = f"{r['seconds_per_edit']:.3f}" if "seconds_per_edit" in r else "-"
        lines.append(f"{name:<10} " + " ".join(f"{c:>22}" for c in cells) + f" {per_edit:>8}")
    for name, r in report["methods"].items():
        if r.get("sequential"):
            curve = ", ".join(
                f"{p['edits_so_far']}:{p['edit_success_seen'] if p['edit_success_seen'] is not None else 0:.2f}"
                for p in r["sequential"]
            )
            lines.append(f"sequential {name} (edits applied: success on them): {curve}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    report = run_bench(
        n_edits=args.edits,
        size=args.size,
        cache_dir=args.cache_dir,
        world_dir=args.world_dir,
        methods=[m for m in args.methods.split(",") if m],
        sequential=args.sequential,
        hparams=json.loads(args.hparams) if args.hparams else None,
        seed=args.seed,
    )
    atomic_write_json(Path(args.out), report)
    print(format_table(report))
    print(f"\nwritten: {args.out}")
    return 0
