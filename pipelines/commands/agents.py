"""``skedit agents run EDITS --run DIR``: write dense fact prompts, judge them, stop at review."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from skedit.agents.config import AgentsConfig
from skedit.prompts.errors import SkeditError

# flags that map one-to-one onto AgentsConfig fields
_FLAGS = {
    "backend": ("--backend", {"choices": ["rules", "openai", "mixed"]}),
    "llm_model": ("--llm-model", {"metavar": "NAME"}),
    "base_url": ("--base-url", {"metavar": "URL"}),
    "shard_tokens": ("--shard-tokens", {"type": int, "metavar": "N"}),
    "max_rounds": ("--max-rounds", {"type": int, "metavar": "N"}),
    "max_facts": ("--max-facts", {"type": int, "metavar": "N"}),
    "max_statements": ("--max-statements", {"type": int, "metavar": "N"}),
    "layout": ("--layout", {"choices": ["tables", "statements"]}),
    "min_edit_accuracy": ("--min-edit-accuracy", {"type": float, "metavar": "X"}),
    "min_locality": ("--min-locality", {"type": float, "metavar": "X"}),
    "llm_timeout": ("--llm-timeout", {"type": float, "metavar": "SECONDS"}),
    "allow_conflicts": ("--allow-conflicts", {"action": "store_true", "default": None}),
    "checkpointer": ("--checkpointer", {"metavar": "URL"}),
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "agents",
        help="write dense fact prompts for a batch of edits and check them against the teacher",
        description="Agents (LangGraph) write dense fact prompts, probe the teacher with them, "
        "and stop for your review (`skedit review DIR`).",
    )
    sub = p.add_subparsers(dest="agents_command", metavar="ACTION", required=True)
    r = sub.add_parser(
        "run",
        help="run the agent graph on EDITS (resumes the saved run in DIR)",
        description="Run analyst -> questioner -> writer/critic per shard -> review on a batch "
        "of edits. Running it again on the same DIR resumes where it stopped.",
    )
    r.add_argument("edits", metavar="EDITS", help="edits file (skedit JSONL, KnowEdit, ...)")
    r.add_argument("--run", dest="run_dir", metavar="DIR", required=True, help="run directory")
    r.add_argument(
        "--model", metavar="PATH", help="base model = teacher (default: the small world model)"
    )
    help_of = {f.name: f.metadata.get("help", "") for f in fields(AgentsConfig)}
    for name, (flag, kw) in _FLAGS.items():
        r.add_argument(flag, dest=name, help=help_of[name], **kw)
    r.add_argument(
        "--auto-approve",
        action="store_true",
        help="approve prompts that pass the critic and reject the rest, without asking",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=run)


def load_batch(path: str) -> list:
    """The batch of edits, read with the data team's loader (every format it knows)."""
    from skedit.pipelines.data.datasets import load_edits

    result = load_edits(path)
    for problem in result.problems:
        print(f"skedit: warning: {problem.render()}", file=sys.stderr)
    if not result.edits:
        raise SkeditError("no edits in the file", file=path)
    return result.edits


def run(args: argparse.Namespace) -> int:
    from skedit.agents.workflow import read_run_config, run_agents
    from skedit.pipelines.commands.review import print_table

    overrides = {n: getattr(args, n) for n in _FLAGS if getattr(args, n) is not None}
    if "checkpointer" not in overrides:  # a resumed run keeps the database its state is in
        saved = read_run_config(Path(args.run_dir)).get("agents") or {}
        if saved.get("checkpointer"):
            overrides["checkpointer"] = saved["checkpointer"]
    config = AgentsConfig(**overrides)
    edits = load_batch(args.edits)
    from skedit.pipelines import plugins
    from skedit.sft.modelops import check_model_path

    model = check_model_path(args.model) if args.model else plugins.default_model()
    status = run_agents(
        edits,
        args.run_dir,
        model_path=model,
        config=config,
        auto_approve=args.auto_approve,
        progress=not args.quiet,
    )
    run_dir = Path(args.run_dir)
    print_table(run_dir)
    if status == "awaiting_review":
        print(
            f"\nWaiting for your review. Read the prompts in {run_dir / 'prompts'}/ or with\n"
            f"  skedit review {run_dir} show ID\n"
            f"then:  skedit review {run_dir} approve ID... | --all\n"
            f"       skedit review {run_dir} reject ID --reason TEXT\n"
            f"       skedit review {run_dir} edit ID"
        )
    else:
        print(f"\nDone. Next: skedit sft {run_dir}")
    return 0
