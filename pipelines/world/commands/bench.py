"""The options of the world's benchmarks (``skedit bench`` alone, ``skedit bench agents|sft|eval|
rome``), kept apart from the benchmarks so that ``skedit --help`` imports no torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from skedit.agents.config import AgentsConfig

# skedit.pipelines.world.benches.sft.VARIANTS, named here so that --help does not import torch
SFT_VARIANTS = "sft/full,sft/lora,sft/layers,kd/full,kd/lora,kd/layers,kd/full-topk"


def perf_arguments(p: argparse.ArgumentParser) -> None:
    """Plain ``skedit bench``: wall time and peak memory per stage."""
    p.add_argument("--sizes", default="10,100,1000", help="comma-separated edit counts")
    p.add_argument("--out", default="bench.json", help="JSON output file")
    p.add_argument("--work", default="runs/bench", help="folder for the bench's run directories")
    p.add_argument("--world-size", default="small", choices=["tiny", "small"])
    p.add_argument("--baselines", default="base,prompt", help="methods in the quality table")
    p.add_argument(
        "--critic",
        action="store_true",
        help="approve only prompts that pass the critic (default: all, to measure cost)",
    )


def perf(args: argparse.Namespace) -> int:
    from skedit.pipelines.world.benches.perf import format_bench, run_bench

    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    results = run_bench(
        sizes=sizes,
        out=Path(args.out),
        work=Path(args.work),
        world_size=args.world_size,
        baselines=[b for b in args.baselines.split(",") if b],
        critic=args.critic,
    )
    print(format_bench(results))
    print(f"\nwritten: {args.out}")
    return 0


def agents_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--edits", type=int, default=100, help="number of world edits")
    ap.add_argument("--out", default="bench_agents.json", help="JSON result file")
    ap.add_argument("--world-dir", help="a built world folder (default: the small world)")
    ap.add_argument("--split", default="test", choices=["dev", "test"])
    ap.add_argument("--max-rounds", type=int, default=AgentsConfig.max_rounds)
    ap.add_argument("--shard-tokens", type=int, default=AgentsConfig.shard_tokens)
    ap.add_argument("--max-facts", type=int, default=AgentsConfig.max_facts)
    # the world teacher reads relation tables (the world recipe's layout)
    ap.add_argument("--layout", default="tables", choices=["tables", "statements"])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--keep", help="keep the two run directories under this folder")


def sft_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--edits", type=int, default=100)
    p.add_argument("--out", default="bench_sft.json")
    p.add_argument("--size", default="small", help="world size (built or reused)")
    p.add_argument("--world-dir", help="use an already built world folder")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--facts-per-prompt",
        type=int,
        default=0,
        help="0 (default): the largest k of the world's in-context curve read at >= 0.98 on "
        "every probe kind",
    )
    p.add_argument(
        "--prompts",
        choices=["agents", "compact"],
        default="agents",
        help="agents: run_agents (rules, auto-approved); compact: one compact "
        "statement per edit, consecutive edits grouped",
    )
    p.add_argument(
        "--variants",
        default=SFT_VARIANTS,
        help=f"comma list of {SFT_VARIANTS.replace(',', ', ')}, sdft/full (TRL experimental)",
    )
    p.add_argument(
        "--steps", type=int, default=0, help="optimizer steps (0: --epochs, as the world recipe)"
    )
    p.add_argument("--epochs", type=float, default=10.0, help="passes when --steps is 0")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--locality-weight", type=float, default=1.0)
    p.add_argument("--ce-weight", type=float, default=1.0, help="kd: weight of CE on the answer")
    p.add_argument("--topk", type=int, default=32, help="kd/*-topk: teacher tokens stored")
    p.add_argument("--threads", type=int, default=1)


def eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--edits", type=int, default=100, help="benchmark edits to use")
    p.add_argument("--size", default="small", help="world size (small|tiny)")
    p.add_argument("--world", metavar="DIR", help="a built world folder (default: build or reuse)")
    p.add_argument("--split", default="test", help="benchmark split (dev|test)")
    p.add_argument("--out", default="bench_eval.json", help="JSON summary to write")
    p.add_argument("--run-dir", help="run directory (default: next to --out)")
    p.add_argument("--baselines", default="base,prompt,ft-l,ft-m,lora")
    p.add_argument("--methods", default="sft,kd", help="skedit training methods")
    p.add_argument("--retention", type=int, default=200, help="retention steps (0 = off)")
    p.add_argument("--retention-lr", type=float, default=3e-4)
    p.add_argument("--sequential", type=int, default=0, help="batches (0 = off)")
    p.add_argument(
        "--prompts",
        choices=["agents", "simple"],
        default="agents",
        help="agents: run_agents with auto-approval; simple: compact statements, "
        "--facts-per-prompt per prompt, no agents (for builds without the agents stage)",
    )
    p.add_argument(
        "--recipe",
        default="world-cpu",
        help="recipe (name or YAML) whose `training:` section trains the students",
    )
    p.add_argument(
        "--facts-per-prompt",
        type=int,
        default=0,
        help="most facts per prompt; 0 (default): the largest k of the world's in-context "
        "curve the teacher reads at >= 0.98 on every probe kind",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)


def rome_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--edits", type=int, default=100)
    p.add_argument("--out", default="bench_rome.json")
    p.add_argument("--size", default="small", choices=["tiny", "small"])
    p.add_argument("--cache-dir", default=None, help="world cache (default: the user cache)")
    p.add_argument("--world-dir", default=None, help="an already built world folder to use")
    p.add_argument("--methods", default="rome,rome-plain,memit,alphaedit")
    p.add_argument("--sequential", type=int, default=4, help="batches of the curve (0: none)")
    p.add_argument("--hparams", default=None, help='JSON: {"rome": {"layer": 1}, ...}')
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)


def step_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=40, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=5, help="untimed first steps (the compile)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--size", default="small", choices=["tiny", "small"])
    p.add_argument("--seed", type=int, default=0, help="the world whose batches are timed")
    p.add_argument(
        "--variants",
        default="plain,fused,compiled,fused+compiled",
        help="comma list of plain, fused, compiled, fused+compiled (plain is always run: the "
        "ratios' baseline)",
    )
    p.add_argument("--out", default="bench_world_step.json", help="JSON result file")
