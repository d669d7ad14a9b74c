"""``skedit run``: facts → agents → review → teacher → training → evaluation."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from skedit.pipelines.run.config import RunConfig, load_config, parse_config
from skedit.pipelines.run.orchestrate import next_step_message, run_pipeline
from skedit.pipelines.run.recipes import recipe_path
from skedit.prompts.errors import SkeditError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run every stage on a batch of edits in one run directory",
        description="Agents write dense prompts, you review them, the teacher answers the "
        "probes, the student is trained, and the result is evaluated. Every stage records its "
        "completion; rerun with --resume to continue after review, a crash or Ctrl-C.",
    )
    p.add_argument("edits", nargs="?", help="edits file (any format `skedit data inspect` reads)")
    p.add_argument("--run", dest="run_dir", help="run directory (created if missing)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    p.add_argument("--model", help="base model path (default: the synthetic world model)")
    p.add_argument(
        "--config",
        help="a recipe: a YAML file or a shipped name (llama, gemma3, gpt2, world, world-cpu)",
    )
    p.add_argument(
        "--auto-approve", action="store_true", help="approve prompts that pass the critic"
    )
    p.add_argument(
        "--force",
        nargs="?",
        const="all",
        action="append",
        metavar="STAGE",
        help="rerun a finished stage (agents|teacher|train|eval) and those after it; alone: all",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.resume and (args.edits or args.run_dir):
        raise SkeditError(
            "--resume DIR takes no edits file and no --run", hint="skedit run --resume DIR"
        )
    if args.resume and (args.model or args.config):
        given = " and ".join(
            f for f, v in (("--model", args.model), ("--config", args.config)) if v
        )
        raise SkeditError(
            f"--resume DIR continues with the settings saved in DIR/config.yaml; {given} would be "
            "ignored",
            file=str(Path(args.resume) / "config.yaml"),
            hint="drop it, or start a new run: skedit run EDITS --run NEW_DIR with your settings",
        )
    if not args.resume and not (args.edits and args.run_dir):
        raise SkeditError(
            "give an edits file and --run DIR (or --resume DIR)",
            hint="skedit run facts.jsonl --run runs/my-run",
        )
    config: RunConfig | None = None
    if not args.resume:
        config = load_config(recipe_path(args.config, field="--config")) if args.config else None
        config = config or parse_config({})
        if args.model:
            from skedit.sft.modelops import check_model_path

            config.model = check_model_path(args.model)
    from skedit.pipelines import plugins

    # with --json, stdout carries the JSON object alone (libraries' log lines go to stderr)
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        outcome = run_pipeline(
            args.resume or args.run_dir,
            edits_path=args.edits,
            config=config,
            resume=bool(args.resume),
            auto_approve=args.auto_approve,
            force=set(args.force or ()),
            eval_hook_for=plugins.eval_hook_for,
            default_model=plugins.default_model,
        )
    if args.json:
        summary = {
            "status": outcome.status,
            "run_dir": str(outcome.run_dir),
            "stages": outcome.stages,
        }
        print(json.dumps(summary, indent=2))
        return 0
    if outcome.status == "awaiting_review":
        print(next_step_message(outcome.run_dir))
        return 0
    print(f"done: {outcome.run_dir}  (report: {outcome.run_dir / 'report.html'})")
    return 0
