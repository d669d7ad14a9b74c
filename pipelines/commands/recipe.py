"""``skedit recipe``: list the shipped recipes; check one without training (every section parsed,
the accelerate/DeepSpeed config its ``launch:`` names found and read by accelerate)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from skedit.prompts.errors import SkeditError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "recipe",
        help="list the shipped recipes, or check one (dry run of its settings and launch)",
        description="`skedit recipe list`; `skedit recipe check [NAME|FILE ...]` parses every "
        "section and the accelerate/DeepSpeed config that `launch:` names (default: every "
        "shipped recipe). Nothing trains and no model is loaded.",
    )
    sub = p.add_subparsers(dest="recipe_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="the recipes shipped with skedit")
    ls.set_defaults(func=run_list)
    check = sub.add_parser("check", help="parse recipes and the launch configs they name")
    check.add_argument("names", nargs="*", metavar="NAME|FILE", help="default: every shipped")
    check.add_argument("--json", action="store_true", help="print the result as one JSON object")
    check.set_defaults(func=run_check)


def check_recipe(name: str | Path) -> dict[str, Any]:
    """A recipe's settings, parsed as `skedit run`/`skedit sft` would, and its launch: which
    engine, how many processes, the batch per process, what this machine lacks to run it."""
    from skedit.pipelines.run.config import load_config
    from skedit.pipelines.run.recipes import recipe_path
    from skedit.sft.launch import (
        check_accelerate_config,
        check_data_parallel,
        per_device_batch,
        resolve_launch,
    )

    path = recipe_path(name)
    config = load_config(path)
    training, launch = config.section("training"), config.section("launch")
    launcher, n, accelerate_config = resolve_launch(
        launch.launcher, launch.processes, launch.accelerate_config
    )
    check_data_parallel(training, n)
    out: dict[str, Any] = {
        "recipe": str(path),
        "launcher": launcher,
        "processes": n if launch.processes or launcher == "inprocess" else "every GPU",
        "batch_per_process": per_device_batch(training.batch_size, n),
        "engine": "one process" if launcher == "inprocess" and n == 1 else "DDP",
        "missing": [],
    }
    if accelerate_config:
        acc = check_accelerate_config(accelerate_config, base=path.parent)
        out.update(
            accelerate_config=acc["file"], engine=acc["engine"], missing=list(acc["missing"])
        )
    if training.bf16 or training.gradient_checkpointing:
        import torch

        if not torch.cuda.is_available():
            out["missing"].append("a CUDA GPU (bf16 / gradient checkpointing are off on CPU)")
    return out


def run_list(args: argparse.Namespace) -> int:
    from skedit.pipelines.run.recipes import shipped_recipes

    for name in shipped_recipes():
        print(name)
    return 0


def run_check(args: argparse.Namespace) -> int:
    from skedit.pipelines.run.recipes import shipped_recipes

    names = args.names or shipped_recipes()
    results: dict[str, Any] = {}
    failed = 0
    for name in names:
        try:
            results[name] = {"ok": True, **check_recipe(name)}
        except SkeditError as exc:
            failed += 1
            results[name] = {"ok": False, "error": exc.render()}
    if args.json:
        print(json.dumps(results))
    else:
        for name, r in results.items():
            if not r["ok"]:
                print(f"{name}: ERROR {r['error']}", file=sys.stderr)
                continue
            procs = r["processes"]
            procs = f"{procs} process(es)" if isinstance(procs, int) else f"on {procs}"
            line = f"{name}: ok, {r['engine']}, {r['launcher']}, {procs}"
            if r.get("accelerate_config"):
                line += f", {r['accelerate_config']}"
            if r["missing"]:
                line += f" (to run it this machine lacks: {'; '.join(r['missing'])})"
            print(line)
    return 2 if failed else 0
