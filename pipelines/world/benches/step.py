"""Benchmark the world model's training step: what ``skedit world build`` spends its time on.

    skedit bench world-step --steps 40 --out bench_world_step.json

Times one training step (forward, backward, clip, AdamW) of the small world's model on the same
packed batches (the longest contexts of the curriculum) in each variant: ``plain`` (eager, the
per-tensor AdamW loop: what the build did before), ``fused`` (the fused CPU AdamW kernel),
``compiled`` (the transformer body through ``torch.compile``) and ``fused+compiled`` (what the
build uses now), in float32 and, where the CPU multiplies bf16 natively, in bf16. Each variant
starts from the same initial weights; the first ``--warmup`` steps (the compile among them) are
left out of the median. Reports the median step, steps per second, the ratio to ``plain`` in
the same precision and the training time the build's steps would take at that pace, with the
variants run one after another in the same process so that they see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

VARIANTS = ("plain", "fused", "compiled", "fused+compiled")


def _batches(n: int, size: str, seed: int):
    from skedit.pipelines.world.batches import FastEncoder, pack, sample_batch
    from skedit.pipelines.world.corpus import build_tokenizer
    from skedit.pipelines.world.gen import generate_world
    from skedit.pipelines.world.train import TRAIN_SPECS, spec_sampler

    spec = TRAIN_SPECS[size]
    world = generate_world(size, seed)
    tok = build_tokenizer(world)
    sampler, enc = spec_sampler(world, spec, seed), FastEncoder(tok)
    rows = [
        pack(sample_batch(sampler, enc, spec), spec.seq_len, tok.pad_token_id) for _ in range(n)
    ]
    return spec, tok, rows


def time_variant(variant: str, precision: str, spec, tok, batches, *, steps: int, warmup: int):
    """Seconds of each of ``steps`` training steps of a fresh model in ``variant``."""
    from skedit.pipelines.world.train import (
        autocast_context,
        backward,
        compiled_body,
        deterministic,
        make_model,
        make_optimizer,
    )

    model = make_model(spec, len(tok), tok, 0)
    model.train()
    opt = make_optimizer(model, spec.lr, weight_decay=spec.weight_decay, fused="fused" in variant)
    body = compiled_body(model, "on" if "compiled" in variant else "off", spec.steps)
    autocast, _ = autocast_context(spec, precision)
    times: list[float] = []
    with deterministic():  # as the build trains
        for i in range(steps + warmup):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            backward(model, body, batches[i % len(batches)], autocast)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            times.append(time.perf_counter() - t)
    return {"warmup_seconds": round(sum(times[:warmup]), 2), "step_seconds": times[warmup:]}


def run_bench(*, steps: int, warmup: int, threads: int, size: str, seed: int, variants) -> dict:
    from skedit.pipelines.world.train import bf16_supported

    torch.set_num_threads(threads)
    spec, tok, batches = _batches(8, size, seed)
    precisions = ["fp32"] + (["bf16"] if bf16_supported() else [])
    rows = []
    for precision in precisions:
        plain = None
        for variant in variants:
            got = time_variant(variant, precision, spec, tok, batches, steps=steps, warmup=warmup)
            med = statistics.median(got["step_seconds"])
            plain = med if variant == "plain" else plain
            rows.append(
                {
                    "variant": variant,
                    "precision": precision,
                    "median_step_ms": round(1000 * med, 1),
                    "steps_per_second": round(1 / med, 2),
                    "speedup_vs_plain": round(plain / med, 2) if plain else None,
                    "build_train_minutes": round(spec.steps * med / 60, 1),
                    "warmup_seconds": got["warmup_seconds"],
                }
            )
            print(_row(rows[-1]), flush=True)
    return {
        "size": size,
        "build_steps": spec.steps,
        "batch": [spec.batch, spec.seq_len],
        "threads": threads,
        "steps_timed": steps,
        "bf16_native": bf16_supported(),
        "cpu": _cpu(),
        "torch": torch.__version__,
        "rows": rows,
    }


def _cpu() -> str:
    from skedit.pipelines.world.build import _cpu_name

    return _cpu_name()


HEADER = (
    f"{'variant':<16}{'precision':<10}{'ms/step':>9}{'steps/s':>9}{'x plain':>9}{'build min':>11}"
)


def _row(r: dict) -> str:
    ratio = "-" if r["speedup_vs_plain"] is None else f"{r['speedup_vs_plain']:.2f}"
    return (
        f"{r['variant']:<16}{r['precision']:<10}{r['median_step_ms']:>9.1f}"
        f"{r['steps_per_second']:>9.2f}{ratio:>9}{r['build_train_minutes']:>11.1f}"
    )


def run(args: argparse.Namespace) -> int:
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
    if variants and variants[0] != "plain":
        variants = ["plain"] + [v for v in variants if v != "plain"]  # the ratios' baseline
    print(HEADER, flush=True)
    result = run_bench(
        steps=args.steps,
        warmup=args.warmup,
        threads=args.threads,
        size=args.size,
        seed=args.seed,
        variants=variants,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['cpu']}, {args.threads} thread(s); written: {args.out}")
    return 0
