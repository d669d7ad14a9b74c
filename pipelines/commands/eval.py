"""``skedit eval DIR``: the student against baselines on the run's probes, one protocol."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from skedit.prompts.errors import SkeditError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate the edited model against baselines and write a report",
        description="Measure DIR/model (skedit) and the chosen baselines on DIR/probes.jsonl: "
        "edit success, paraphrase, portability, locality (greedy exact match and teacher-forced "
        "token accuracy, 95% bootstrap CIs), fluency and perplexity; write DIR/metrics.json, "
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
    p.add_argument(
        "--hparams",
        metavar="FILE",
        help="YAML mapping baseline name -> hyper-parameters, e.g. `ft-m: {lr: 1e-3, steps: 40}`",
    )
    p.add_argument(
        "--probes",
        metavar="FILE",
        help="score the probes of this edits file (any format `skedit data` reads) instead of "
        "DIR/probes.jsonl; a rephrase or locality probe counts only where the base model "
        "answered it as the fact says",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of baselines and bootstrap")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run)


def _parse_baselines(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise SkeditError("a baseline is named twice", field="--baselines")
    return names


def _read_hparams(path: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SkeditError(f"cannot read hyper-parameters: {exc}", file=path) from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise SkeditError(
            "expected a mapping of baseline name to a mapping of settings",
            file=path,
            hint="e.g.\nft-m:\n  lr: 0.001\n  steps: 40",
        )
    return data


def run(args: argparse.Namespace) -> int:
    from skedit.pipelines import plugins
    from skedit.pipelines.eval.harness import evaluate_run
    from skedit.pipelines.eval.report import terminal_table
    from skedit.pipelines.eval.scoring import METRICS

    for flag in ("sequential", "retention"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise SkeditError(f"--{flag} must be at least 1", field=f"--{flag}")
    hparams = _read_hparams(args.hparams) if args.hparams else None
    metrics = evaluate_run(
        args.dir,
        baselines=_parse_baselines(args.baselines),
        sequential=args.sequential,
        retention=args.retention,
        heldout=args.heldout,
        probes_file=args.probes,
        hparams=hparams,
        hook_for=plugins.eval_hook_for,  # e.g. the synthetic world's texts and recall
        seed=args.seed,
        progress=not args.json,
    )
    d = Path(args.dir)
    if args.json:
        keep = [*METRICS, "fluency", "perplexity", "world_recall", "world_two_hop"]
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
        print(f"\nwrote {d / 'metrics.json'}, {d / 'report.md'}, {d / 'report.html'}")
    return 0
