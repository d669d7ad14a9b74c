"""``skedit eval DIR``: the student against baselines on the run's probes, one protocol."""

from __future__ import annotations

import argparse
import json
import sys

from skedit.prompts.errors import SkeditError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate the edited model against baselines and write a report",
        description="Measure DIR/model (skedit) and the chosen baselines on DIR/probes.jsonl: "
        "edit success, paraphrase, portability, locality (greedy exact match and teacher-forced "
        "token accuracy, 95%% bootstrap CIs), fluency and perplexity; write DIR/metrics.json, "
        "DIR/report.md and DIR/report.html.",
    )
    p.add_argument("dir", metavar="DIR", help="run directory")
    p.add_argument(
        "--baselines",
        default="base,prompt",
        help="comma-separated: base, prompt, ft-l, ft-m, lora, rome, memit, alphaedit "
        "(default: base,prompt)",
    )
    p.add_argument("--sequential", type=int, metavar="K", help="also edit in K batches")
    p.add_argument(
        "--retention", type=int, metavar="STEPS", help="also fine-tune on unrelated text"
    )
    p.add_argument("--heldout", metavar="FILE", help="held-out text, one passage per line")
    p.add_argument("--seed", type=int, default=0, help="seed of baselines and bootstrap")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run)


def _parse_baselines(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise SkeditError("a baseline is named twice", field="--baselines")
    return names


def run(args: argparse.Namespace) -> int:
    from skedit.pipelines.evaluate import METRICS, evaluate_run
    from skedit.pipelines.report import terminal_table, write_report

    for flag in ("sequential", "retention"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise SkeditError(f"--{flag} must be at least 1", field=f"--{flag}")
    metrics = evaluate_run(
        args.dir,
        baselines=_parse_baselines(args.baselines),
        sequential=args.sequential,
        retention=args.retention,
        heldout=args.heldout,
        seed=args.seed,
        progress=not args.json,
    )
    paths = write_report(args.dir, metrics)
    if args.json:
        keep = [*METRICS, "fluency", "perplexity"]
        view = {
            "methods": {
                name: {k: v for k, v in res.items() if k in keep}
                for name, res in metrics["methods"].items()
            }
        }
        for extra in ("sequential", "retention"):
            if extra in metrics:
                view[extra] = metrics[extra]
        json.dump(view, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(terminal_table(metrics))
        print(f"\nwrote {paths['metrics']}, {paths['markdown']}, {paths['html']}")
    return 0
