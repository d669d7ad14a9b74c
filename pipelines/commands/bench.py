"""``skedit bench``: the performance benchmark on the synthetic world."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="wall time and peak memory per stage for 10/100/1000 world edits → bench.json",
    )
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
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from skedit.pipelines.bench import format_bench, run_bench

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
