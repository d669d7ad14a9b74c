"""``skedit review DIR``: list, read, approve, reject or edit the agents' dense prompts.

Every decision resumes the run's saved LangGraph thread (from this new process); an edited
prompt is checked by the critic again before it counts as approved.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from skedit.pipelines.run.rundir import RunDir
from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import DensePrompt


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "review",
        help="review the dense prompts of an agent run (list, show, approve, reject, edit)",
        description="Without ACTION: list the prompts. Decisions resume the paused agent run.",
    )
    p.add_argument("run_dir", metavar="DIR", help="run directory of `skedit agents run`")
    p.add_argument("--json", action="store_true", help="print the list as one JSON object")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    s = sub.add_parser("show", help="show one prompt with its facts and the critic's findings")
    s.add_argument("id", metavar="ID")
    a = sub.add_parser("approve", help="approve prompts by id, or --all waiting prompts")
    a.add_argument("ids", nargs="*", metavar="ID")
    a.add_argument("--all", action="store_true", help="approve every prompt still waiting")
    r = sub.add_parser("reject", help="reject a prompt (its facts are not distilled)")
    r.add_argument("id", metavar="ID")
    r.add_argument("--reason", required=True, help="why (kept with the prompt)")
    e = sub.add_parser("edit", help="edit a prompt's text ($EDITOR, or --text); re-checked")
    e.add_argument("id", metavar="ID")
    e.add_argument("--text", help="the new text (otherwise $EDITOR opens)")
    p.set_defaults(func=run)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def prompt_rows(run_dir: Path) -> list[dict]:
    from skedit.agents.nodes.review import summary
    from skedit.agents.workflow import load_prompts

    return [summary(p) for p in load_prompts(run_dir)]


def print_table(run_dir: Path) -> None:
    rows = prompt_rows(run_dir)
    head = ("ID", "STATUS", "CRITIC", "FACTS", "TOKENS", "FACTS/100T", "EDIT ACC", "LOCALITY")
    table = [head] + [
        (
            r["id"],
            r["status"],
            r["verdict"],
            str(len(r["edit_ids"])),
            str(r["tokens"]),
            f"{r['facts_per_100_tokens']:g}",
            _pct(r["teacher_edit_accuracy"]),
            _pct(r["teacher_locality"]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    facts = sum(len(r["edit_ids"]) for r in rows)
    print(
        f"\n{len(rows)} prompts, {facts} facts: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + "  (EDIT ACC / LOCALITY: the teacher reading the prompt, at the critic's last check)"
    )


def _show(run_dir: Path, pid: str) -> None:
    md = run_dir / "prompts" / f"{pid}.md"
    if not md.exists():
        ids = [r["id"] for r in prompt_rows(run_dir)]
        raise SkeditError(f"no prompt {pid!r}", file=str(run_dir), hint=f"ids: {', '.join(ids)}")
    print(md.read_text(encoding="utf-8"), end="")


def _editor_text(current: str, pid: str) -> str:
    """Open $EDITOR (or $VISUAL, else vi) on the text; lines starting with # are dropped."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        fh.write(current + "\n")
        fh.write(f"# Edit prompt {pid} above. Lines starting with # are ignored.\n")
        fh.write("# Save and quit to submit; leave it unchanged to cancel.\n")
        path = fh.name
    try:
        done = subprocess.run([*shlex.split(editor), path], check=False)
        if done.returncode != 0:
            raise SkeditError(f"the editor ({editor}) exited with {done.returncode}; nothing sent")
        text = Path(path).read_text(encoding="utf-8")
    finally:
        Path(path).unlink(missing_ok=True)
    return " ".join(ln.strip() for ln in text.splitlines() if not ln.startswith("#")).strip()


def _find(run_dir: Path, pid: str) -> DensePrompt:
    from skedit.agents.workflow import load_prompts

    for p in load_prompts(run_dir):
        if p.id == pid:
            return p
    raise SkeditError(f"no prompt {pid!r}", file=str(run_dir))


def run(args: argparse.Namespace) -> int:
    from skedit.agents.workflow import submit_review

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise SkeditError("run directory not found", file=str(run_dir))
    action = args.action
    if action is None:
        if args.json:
            print(json.dumps({"run_dir": str(run_dir), "prompts": prompt_rows(run_dir)}, indent=2))
        else:
            print_table(run_dir)
        return 0
    if action == "show":
        _show(run_dir, args.id)
        return 0
    if action == "approve":
        if not args.ids and not args.all:
            raise SkeditError("name the prompts to approve, or pass --all")
        decision = {"approve": list(args.ids), "approve_all": bool(args.all)}
        from skedit.agents.routing import PENDING

        failed = [
            r["id"]
            for r in prompt_rows(run_dir)
            if r["verdict"] == "failed"
            and r["status"] in PENDING
            and (args.all or r["id"] in args.ids)
        ]
        if failed:  # the reviewer's call, but never an unnoticed one
            print(
                f"note: approving {len(failed)} prompt(s) that failed the critic "
                f"({', '.join(failed)}): the teacher's answers for them go into training as they "
                f"are; see `skedit review {run_dir} show ID`",
                file=sys.stderr,
            )
    elif action == "reject":
        decision = {"reject": {args.id: args.reason}}
    else:
        text = args.text
        if text is None:
            current = _find(run_dir, args.id).text
            text = _editor_text(current, args.id)
            if text == current.strip():
                print("unchanged; nothing sent")
                return 0
        decision = {"edit": {args.id: text}}
    status = submit_review(run_dir, decision, progress=False)
    if args.json:
        print(json.dumps({"status": status, "prompts": prompt_rows(run_dir)}, indent=2))
        return 0
    print_table(run_dir)
    if status == "done":
        # a directory `skedit run` made goes on with its own resume; an agents-only one with sft
        nxt = "skedit run --resume" if RunDir(run_dir).stages_file.is_file() else "skedit sft"
        print(f"\nReview complete. Next: {nxt} {run_dir}")
    else:
        print(f"\nStill waiting for a decision on some prompts: skedit review {run_dir} ...")
    return 0
