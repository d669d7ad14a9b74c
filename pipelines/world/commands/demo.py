"""``skedit demo``: build (or reuse) the synthetic world and edit 50 of its facts end to end."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="edit 50 facts of the built-in synthetic world end to end and show the table",
        description="Builds or reuses the synthetic world model, runs agents → teacher → "
        "training → evaluation with --auto-approve, and prints base / PROMPT / FT-M / skedit.",
    )
    p.add_argument("--run", dest="run_dir", default="runs/demo", help="run directory")
    p.add_argument("--edits", type=int, default=50, help="how many world edits (default 50)")
    p.add_argument("--size", default="small", choices=["tiny", "small"], help="world size")
    p.add_argument("--force", action="store_true", help="rerun every stage")
    p.add_argument(
        "--critic",
        action="store_true",
        help="approve only prompts that pass the critic (default: every prompt the agents write)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from skedit.pipelines.world.demo import clock, compact_table, run_demo

    # with --json, stdout carries the JSON object alone (libraries' log lines go to stderr)
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        result = run_demo(
            run_dir=args.run_dir,
            n_edits=args.edits,
            size=args.size,
            force=args.force,
            critic=args.critic,
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print()
    n = result["edits"]
    fewer = f" (all its test edits; {args.edits} asked)" if n < args.edits else ""
    print(f"skedit demo: {n} edits on the synthetic world{fewer} ({result['seconds']} s)")
    print("greedy exact match (locality: agreement with the unedited model), 95% bootstrap CI")
    print(compact_table(result["metrics"]))
    print(f"\nreport: file://{result['report']}")
    world = (
        "the shipped world model" if result["world"] == "shipped" else "a world model built here"
    )
    print(f"demo finished in {clock(result['seconds'])} ({world})")
    return 0
