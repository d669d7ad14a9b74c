"""``skedit data inspect`` and ``skedit data convert``: look at a dataset file, turn it into
skedit JSONL. Both stream the file and never print a traceback for bad input (exit 2)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from skedit.pipelines.data.datasets import FORMATS, InvalidRecords, LoadResult, load_edits
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import write_jsonl
from skedit.prompts.validate import Problem

MAX_LISTED = 50  # problems listed in human output; --json lists all
KINDS = ("edit", "rephrase", "portability", "locality")
FORMAT_HELP = (
    "auto (default: from content), knowedit (EasyEdit KnowEdit: ZsRE, wiki_recent, "
    "wiki_counterfact, WikiBio), counterfact (ROME), zsre (MEND eval), mquake, "
    "jsonl (skedit's own, one edit per line), csv (subject,prompt,target_new[,target_old])"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="inspect and convert knowledge-editing datasets",
        description="Read local dataset files (KnowEdit, CounterFact, ZsRE, MQuAKE, skedit "
        "JSONL, CSV): count what they hold, report problems, convert them to skedit JSONL.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", type=Path, metavar="FILE", help="the dataset file")
        p.add_argument("--format", default="auto", choices=("auto", *FORMATS), help=FORMAT_HELP)
        p.add_argument(
            "--skip-invalid",
            action="store_true",
            help="skip records that cannot become a valid edit (they are counted and listed)",
        )

    p = sub.add_parser(
        "inspect",
        help="count edits and probes, list problems (exit 2 when there are any)",
        description="Count the edits, rephrases, portability and locality probes (by kind) in a "
        "dataset file and list its problems: records that cannot be read, empty targets, "
        "subjects missing from prompts, duplicate ids, conflicting edits. Exit 0 when the file "
        "is clean, 2 when it has problems or cannot be read.",
    )
    common(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "convert",
        help="write a dataset file as skedit JSONL (one edit per line)",
        description="Convert a dataset file to skedit JSONL. Nothing is written when the file "
        "has problems, unless --skip-invalid (drop the bad records) or --allow-problems "
        "(write everything; duplicates and conflicts stay, to be resolved later).",
    )
    common(p)
    p.add_argument("out", type=Path, metavar="OUT.jsonl", help="where to write the edits")
    p.add_argument("--allow-problems", action="store_true", help="write despite problems")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=cmd_convert)


def summarise(result: LoadResult, path: Path) -> dict[str, Any]:
    """The ``inspect --json`` object."""
    probes: Counter[str] = Counter({k: 0 for k in KINDS})
    subkinds: dict[str, Counter[str]] = {"portability": Counter(), "locality": Counter()}
    for e in result.edits:  # what Edit.probes() gives, counted without building it
        probes["edit"] += 1
        probes["rephrase"] += len(e.rephrases)
        for p in [*e.portability, *e.locality]:
            probes[p.kind] += 1
            if p.kind in subkinds:
                subkinds[p.kind][p.subkind or "unspecified"] += 1
    return {
        "file": str(path),
        "format": result.format,
        "container": result.container,
        "records": result.records,
        "edits": len(result.edits),
        "edit_kinds": dict(Counter(e.kind for e in result.edits)),
        "rephrases": probes["rephrase"],
        "probes": dict(probes),
        "probe_subkinds": {k: dict(v) for k, v in subkinds.items()},
        "skipped": result.skipped,
        "unused_fields": result.unused_fields,
        "unknown_fields": result.unknown_fields,
        "problems": [_problem_json(p) for p in result.problems],
        "ok": result.ok,
    }


def _problem_json(p: Problem) -> dict[str, Any]:
    return {
        "record": p.record,
        "field": p.field,
        "message": p.message,
        "line": p.line,
        "file": p.file,
    }


def _print_problems(problems: list[Problem], out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up at call time (tests and pipes replace it)
    for p in problems[:MAX_LISTED]:
        print(f"  - {p.render()}", file=out)
    if len(problems) > MAX_LISTED:
        print(f"  ... and {len(problems) - MAX_LISTED} more (--json lists all)", file=out)


def _load(args: argparse.Namespace) -> LoadResult:
    return load_edits(args.file, format=args.format, skip_invalid=args.skip_invalid)


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        result = _load(args)
    except SkeditError as exc:
        problems = getattr(exc, "problems", None) or [
            Problem(file=exc.file, record=exc.record, field=exc.field, message=exc.message)
        ]
        if args.json:
            obj = {"file": str(args.file), "format": args.format, "error": exc.render()}
            print(json.dumps(obj | {"problems": [_problem_json(p) for p in problems]}))
            return exc.exit_code
        if isinstance(exc, InvalidRecords):
            print(f"skedit: error: {exc.render()}", file=sys.stderr)
            if len(problems) > 1:
                print(f"{len(problems)} invalid records:", file=sys.stderr)
                _print_problems(problems, sys.stderr)
            return exc.exit_code
        raise
    summary = summarise(result, args.file)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        _print_summary(summary, result)
    return 0 if result.ok else 2


def _print_summary(s: dict[str, Any], result: LoadResult) -> None:
    container = {"json": "JSON list", "jsonl": "JSONL", "csv": "CSV"}.get(s["container"], "")
    n = s["records"]
    print(f"{s['file']}: {s['format']} ({container}, {n} record{'' if n == 1 else 's'})")
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(s["edit_kinds"].items()))
    print(f"edits        {s['edits']:>7}" + (f"   ({kinds})" if kinds else ""))
    for kind in ("rephrase", "portability", "locality"):
        subs = s["probe_subkinds"].get(kind, {})
        detail = ", ".join(f"{k} {n}" for k, n in sorted(subs.items()))
        label = {"rephrase": "rephrases"}.get(kind, kind)
        print(f"{label:<12} {s['probes'][kind]:>7}" + (f"   ({detail})" if detail else ""))
    known = {k: n for k, n in s["unused_fields"].items() if k not in s["unknown_fields"]}
    for label, fields in (("unused fields", known), ("unknown fields", s["unknown_fields"])):
        if fields:
            listed = ", ".join(f"{k} ({n} records)" for k, n in sorted(fields.items()))
            print(f"{label}: {listed}")
    if s["skipped"]:
        print(f"skipped {s['skipped']} invalid records (--skip-invalid)")
    if result.problems:
        print(f"problems     {len(result.problems):>7}")
        _print_problems(result.problems)
    else:
        print("problems           0   (clean)")


def cmd_convert(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists() and out.resolve() == args.file.resolve():
        raise SkeditError("OUT is the input file", file=str(out), hint="write to a new file")
    if out.exists() and not args.force:
        raise SkeditError("already exists", file=str(out), hint="pass --force to overwrite it")
    if out.is_dir():
        raise SkeditError("is a folder; give a file name", file=str(out))
    result = _load(args)
    remaining = result.kept_problems
    if remaining and not args.allow_problems:
        print(
            f"skedit: error: {args.file}: {len(remaining)} problems; nothing written",
            file=sys.stderr,
        )
        _print_problems(remaining, sys.stderr)
        print(
            "  hint: fix them, or pass --skip-invalid (drop bad records) or --allow-problems "
            "(write all edits as they are)",
            file=sys.stderr,
        )
        return 2
    try:
        write_jsonl(out, result.edits)
    except OSError as exc:
        raise SkeditError(f"cannot write: {exc.strerror or exc}", file=str(out)) from None
    s = summarise(result, args.file)
    pr = s["probes"]
    msg = (
        f"wrote {s['edits']} edits ({pr['rephrase']} rephrases, {pr['portability']} portability "
        f"and {pr['locality']} locality probes) from {s['format']} to {out}"
    )
    if result.skipped:
        msg += f"; skipped {result.skipped} invalid records:"
    print(msg, file=sys.stderr)
    if result.skipped:
        _print_problems(result.invalid, sys.stderr)
    if remaining:
        print(f"written despite {len(remaining)} problems (--allow-problems):", file=sys.stderr)
        _print_problems(remaining, sys.stderr)
    return 0
