"""Benchmark the TRL stage on the synthetic world: sft and kd × full / LoRA / layers, and kd
from the teacher's stored top-k (``kd/full-topk``).

    skedit bench sft --edits 100 --out bench_sft.json

Builds dense prompts for N world edits (``compact_statement`` facts, ~8 per prompt), records
the base model's locality answers, runs the teacher once, trains each variant in memory and
scores every probe by greedy exact match. Held-out columns use one rephrase and one locality
probe per edit that the transfer set never contained. Floors (issue 5): edit ≥ .95, paraphrase
≥ .90, locality ≥ .97, portability ≥ .80 of the teacher's, teacher + training ≤ 300 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from skedit.agents.backends.layout import layout_text
from skedit.pipelines.run.rundir import RunDir
from skedit.pipelines.world.benches.sft_scores import (
    measured,
    record_locality,
    score,
    split_probes,
)
from skedit.prompts import APPROVED
from skedit.prompts.io import atomic_write_json, read_jsonl
from skedit.prompts.render import context_prefix
from skedit.prompts.schema import DensePrompt, Edit, Probe
from skedit.sft.config import TrainConfig
from skedit.sft.modelops import load_model
from skedit.sft.train import train_in_memory
from skedit.sft.transfer import add_teacher_topk, build_transfer_set

FLOORS = {
    "edit_success": 0.95,
    "paraphrase": 0.90,
    "locality": 0.97,
    "portability_ratio": 0.80,
    "seconds": 300.0,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "sft/full": {"method": "sft", "scope": "full"},
    "sft/lora": {"method": "sft", "scope": "lora", "learning_rate": 2e-3},
    "sft/layers": {"method": "sft", "scope": "layers", "modules": ["mlp"]},
    "kd/full": {"method": "kd", "scope": "full"},
    "kd/lora": {"method": "kd", "scope": "lora", "learning_rate": 2e-3},
    "kd/layers": {"method": "kd", "scope": "layers", "modules": ["mlp"]},
    # distilled from the teacher's top-k stored in the transfer set: no teacher in training
    "kd/full-topk": {"method": "kd", "scope": "full", "kd_teacher": "topk"},
}


def group_prompts(edits: Sequence[Edit], per_prompt: int) -> list[DensePrompt]:
    """Consecutive edits share a prompt (a person's edits stay together), approved."""
    out = []
    for i in range(0, len(edits), per_prompt):
        chunk = edits[i : i + per_prompt]
        out.append(
            DensePrompt(
                edit_ids=[e.id for e in chunk],
                status="approved",
                text=layout_text(chunk, layout="statements"),
            )
        )
    return out


def agents_prompts(
    edits, world, facts: int, run_dir: Path
) -> tuple[list[DensePrompt], list[Probe]]:
    """Prompts and probes written by the agents (rules backend, auto-approved)."""
    from skedit.agents.config import AgentsConfig
    from skedit.agents.workflow import run_agents

    run_agents(
        list(edits),
        run_dir,
        model_path=world.model_dir,
        config=AgentsConfig(max_facts=facts, layout="tables"),
        auto_approve=True,
        progress=False,
    )
    return (
        read_jsonl(RunDir(run_dir).prompts, DensePrompt),
        read_jsonl(RunDir(run_dir).probes, Probe),
    )


def train_sdft(model, tok, probes: Sequence[Probe], prefix_of: dict[str, str], args):
    """SDFT (TRL experimental): the student samples answers on-policy and matches the base
    model reading the prompt (``privileged_context``); locality probes get no context."""
    from datasets import Dataset
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer

    from skedit.sft.train import unpatch

    rows = [
        {
            "prompt": p.prompt,
            "privileged_context": "" if p.kind == "locality" else prefix_of[p.edit_id],
        }
        for p in probes
    ]
    with tempfile.TemporaryDirectory(prefix="bench-sdft-") as tmp:
        cfg = SDFTConfig(
            output_dir=tmp,
            max_steps=args.steps or 120,
            learning_rate=args.lr,
            per_device_train_batch_size=args.batch_size,
            generation_batch_size=args.batch_size,
            num_generations=1,
            max_completion_length=4,
            temperature=1.0,
            teacher_model_kind="base",
            teacher_prompt_template="{privileged_context}{prompt}",
            bf16=False,
            use_cpu=True,
            activation_checkpointing=False,
            report_to="none",
            save_strategy="no",
            logging_steps=20,
            seed=args.seed,
        )
        trainer = SDFTTrainer(
            model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok
        )
        trainer.train()
    model = trainer.model
    unpatch(model)
    model.eval()
    return model


def _world(args):
    from skedit.pipelines.world.build import build_world, load_world_build

    if args.world_dir:
        return load_world_build(args.world_dir)
    return build_world(size=args.size, seed=args.seed)


def _bench_prompts(args, edits, world) -> tuple[list, list, float, int | None]:
    """The prompts and probes to train on: ``(prompts, probes, agents seconds, approved)``."""
    if args.prompts != "agents":
        return (
            group_prompts(edits, args.facts_per_prompt),
            [p for e in edits for p in e.probes()],
            0.0,
            None,
        )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
        prompts, probes = agents_prompts(edits, world, args.facts_per_prompt, Path(tmp))
    agents_s = time.perf_counter() - t0
    # the critic rejects prompts its teacher cannot answer; this benchmark measures the
    # training stage, so it trains on every prompt the agents wrote and reports how many
    # they approved
    approved = sum(p.status in APPROVED for p in prompts)
    prompts = [p.model_copy(update={"status": "approved"}) for p in prompts if p.text]
    return prompts, probes, agents_s, approved


def _variant(name, args, world, rows, train_probes, held, prefix_of, teacher, seconds):
    """Train variant ``name`` from the base model and measure it; ``seconds``: the teacher
    stage's (live, stored top-k) time."""
    spec = {
        **VARIANTS[name],
        "max_steps": args.steps,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "locality_weight": args.locality_weight,
    }
    spec.setdefault("learning_rate", args.lr)
    if spec["method"] == "kd":
        spec["ce_weight"] = args.ce_weight
    stored = spec.get("kd_teacher") == "topk"
    if stored:
        spec["topk"] = args.topk
    cfg = TrainConfig(**spec)
    teacher_variant_s = seconds[0] + (seconds[1] if stored else 0.0)
    model, tok = load_model(world.model_dir, device="cpu")
    t0 = time.perf_counter()
    model = train_in_memory(model, tok, rows, cfg)
    train_s = time.perf_counter() - t0
    scores = measured(model, tok, rows, train_probes, held, teacher, teacher_variant_s, train_s)
    return {"config": cfg.to_dict(), **scores}


def _sdft(args, world, rows, train_probes, held, prefix_of, teacher) -> dict:
    """TRL's experimental on-policy self-distillation, for comparison."""
    model, tok = load_model(world.model_dir, device="cpu")
    t0 = time.perf_counter()
    model = train_sdft(model, tok, train_probes, prefix_of, args)
    train_s = time.perf_counter() - t0
    config = {
        "trainer": "trl.experimental.sdft.SDFTTrainer",
        "steps": args.steps,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
    }
    return {
        "config": config,
        **measured(model, tok, rows, train_probes, held, teacher, 0.0, train_s),
    }


def run_bench(args) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    world = _world(args)
    edits = read_jsonl(world.benchmark[args.split], Edit)[: args.edits]
    base, tok = load_model(world.model_dir, device="cpu")
    from skedit.pipelines.world.demo import facts_per_prompt

    layout = "tables" if args.prompts == "agents" else "statements"
    args.facts_per_prompt = facts_per_prompt(args.facts_per_prompt, world.report, layout)
    prompts, probes, agents_s, agents_approved = _bench_prompts(args, edits, world)
    prefix_of = {eid: context_prefix(p.text) for p in prompts for eid in p.edit_ids}
    probes = [p for p in probes if p.edit_id in prefix_of]
    train_probes, held = split_probes(probes)
    record_locality(base, tok, [p for p in probes if not p.expected])
    everything = train_probes + held
    start = time.perf_counter()
    rows = build_transfer_set(
        base, tok, prompts, train_probes, config=TrainConfig(locality_weight=args.locality_weight)
    )
    teacher_s = time.perf_counter() - start
    topk_s = 0.0
    if any(VARIANTS.get(n, {}).get("kd_teacher") == "topk" for n in args.variants.split(",")):
        start = time.perf_counter()  # one more teacher pass over the rows, counted for those
        add_teacher_topk(base, tok, rows, k=args.topk)
        topk_s = time.perf_counter() - start
    teacher = score(
        base,
        tok,
        everything,
        prefixes=[None if p.kind == "locality" else prefix_of[p.edit_id] for p in everything],
    )
    teacher_loc_in_context = score(
        base,
        tok,
        [p for p in everything if p.kind == "locality"],
        prefixes=[prefix_of[p.edit_id] for p in everything if p.kind == "locality"],
    )
    results: dict[str, Any] = {
        "base": {"trained": score(base, tok, train_probes), "held_out": score(base, tok, held)},
        "teacher": {"all": teacher, "locality_with_prompt": teacher_loc_in_context["locality"]},
    }
    del base
    for name in args.variants.split(","):
        if name == "sdft/full":
            results[name] = _sdft(args, world, rows, train_probes, held, prefix_of, teacher)
            continue
        results[name] = _variant(
            name, args, world, rows, train_probes, held, prefix_of, teacher, (teacher_s, topk_s)
        )
        print(f"{name}: {json.dumps(results[name]['trained'])}", file=sys.stderr)
    return {
        "world": str(world.world_dir),
        "split": args.split,
        "edits": len(edits),
        "prompts": len(prompts),
        "prompt_source": args.prompts,
        "agents_seconds": round(agents_s, 1),
        "agents_approved": agents_approved,
        "edits_covered": len({e for p in prompts for e in p.edit_ids}),
        "facts_per_prompt": args.facts_per_prompt,
        "transfer_rows": len(rows),
        "threads": args.threads,
        "floors": FLOORS,
        "results": results,
    }


def _cell(r: dict, part: str, key: str) -> str:
    v = r.get(part, {}).get(key)
    return f"{v['mean']:.3f}" if v else "  -  "


def table(report: dict[str, Any]) -> str:
    head = (
        f"{'variant':<12} {'edit':>6} {'para':>6} {'para*':>6} {'port':>6} {'port/T':>6} "
        f"{'loc':>6} {'loc*':>6} {'=T':>5} {'teach s':>7} {'train s':>7} {'RAM MB':>7} floors"
    )
    lines = [head, "-" * len(head)]
    res = report["results"]
    t = res["teacher"]["all"]
    lines.append(
        f"{'teacher':<12} {t['edit_success']['mean']:>6.3f} "
        f"{t['paraphrase']['mean']:>6.3f} {'':>6} {t['portability']['mean']:>6.3f} "
        f"{'':>6} {t['locality']['mean']:>6.3f}   (locality with the prompt in "
        f"context: {res['teacher']['locality_with_prompt']['mean']:.3f})"
    )
    b = res["base"]
    lines.append(
        f"{'base':<12} {_cell(b, 'trained', 'edit_success'):>6} "
        f"{_cell(b, 'trained', 'paraphrase'):>6} {_cell(b, 'held_out', 'paraphrase'):>6} "
        f"{_cell(b, 'trained', 'portability'):>6} {'':>6} "
        f"{_cell(b, 'trained', 'locality'):>6} {_cell(b, 'held_out', 'locality'):>6}"
    )
    for name, r in res.items():
        if name in ("teacher", "base"):
            continue
        tr = r["trained"]
        ok = {
            "edit": tr["edit_success"]["mean"] >= FLOORS["edit_success"],
            "para": tr["paraphrase"]["mean"] >= FLOORS["paraphrase"],
            "loc": tr["locality"]["mean"] >= FLOORS["locality"],
            "port": (r["portability_ratio"] or 0) >= FLOORS["portability_ratio"],
            "time": r["total_seconds"] <= FLOORS["seconds"],
        }
        missed = [k for k, v in ok.items() if not v]
        ratio = f"{r['portability_ratio']:.2f}" if r["portability_ratio"] is not None else "-"
        lines.append(
            f"{name:<12} {_cell(r, 'trained', 'edit_success'):>6} "
            f"{_cell(r, 'trained', 'paraphrase'):>6} {_cell(r, 'held_out', 'paraphrase'):>6} "
            f"{_cell(r, 'trained', 'portability'):>6} {ratio:>6} "
            f"{_cell(r, 'trained', 'locality'):>6} {_cell(r, 'held_out', 'locality'):>6} "
            f"{r['matches_transfer_set'].get('taught', 0):>5.2f} {r['teacher_seconds']:>7.1f} {r['train_seconds']:>7.1f} {r['peak_rss_mb']:>7.0f} "
            + ("all met" if not missed else "missed: " + ",".join(missed))
        )
    lines.append(
        "* = held out of the transfer set (never trained on); others are the run's "
        "probes, as `skedit eval` scores them. Greedy exact match. =T: the student gives "
        "the teacher's own answer on the taught probes (distillation fidelity)."
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = run_bench(args)
    atomic_write_json(Path(args.out), report)
    print(table(report))
    print(f"wrote {args.out}")
    return 0
