"""Run the agent graph on a batch, pause for review, resume from any process.

State lives in ``DIR/agents.sqlite``, or in the PostgreSQL database named by the
``checkpointer`` setting (one thread per batch, ``durability="sync"``: a killed run loses no
finished shard). A database serves many run directories, so there the thread's id carries a
random part and is kept in ``DIR/agents.thread``. Whenever the graph pauses or finishes, the run
directory files are rewritten from the saved state: ``edits.jsonl``, ``probes.jsonl``,
``prompts/``.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import yaml
from langgraph.types import Command
from pydantic import ValidationError
from tqdm.auto import tqdm

from skedit.agents.checkpoints import SQLITE_FILE, describe, open_checkpointer
from skedit.agents.config import AgentsConfig
from skedit.agents.context import AgentsContext
from skedit.agents.graph import build_graph
from skedit.agents.nodes.review import ReviewDecision, summary
from skedit.agents.routing import PENDING
from skedit.prompts import runfiles as F
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import atomic_write_text, read_jsonl, write_jsonl
from skedit.prompts.schema import DensePrompt, Edit, Probe, content_id

Status = Literal["awaiting_review", "done"]
CHECKPOINTS = SQLITE_FILE
THREAD_FILE = "agents.thread"  # the batch's thread id, when the checkpoints are in a database


def thread_id_for(edits: list[Edit]) -> str:
    """One thread per batch: the id follows the batch's content."""
    return content_id(sorted(e.id for e in edits), prefix="batch-", length=12)


def read_run_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / F.CONFIG
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SkeditError(f"not valid YAML: {exc}", file=str(path)) from exc
    if not isinstance(data, dict):
        raise SkeditError("expected a mapping at the top level", file=str(path))
    return data


def _write_run_config(run_dir: Path, model_path: str, config: AgentsConfig) -> None:
    data = read_run_config(run_dir)  # other stages' sections are kept
    data["model"] = str(model_path)
    data["agents"] = config.to_dict()
    atomic_write_text(run_dir / F.CONFIG, yaml.safe_dump(data, sort_keys=False))


def saved_config(run_dir: Path) -> AgentsConfig:
    """The agents settings saved in ``DIR/config.yaml`` (defaults for a new directory)."""
    return AgentsConfig.from_dict(read_run_config(run_dir).get("agents"))


def saved_thread(run_dir: Path, config: AgentsConfig) -> str | None:
    """The run directory's batch thread (one per run directory), if any."""
    if config.checkpointer:
        path = run_dir / THREAD_FILE
        if not path.exists():
            return None
        return path.read_text(encoding="utf-8").strip() or None
    if not (run_dir / CHECKPOINTS).exists():
        return None
    with _compiled(run_dir, config) as graph:
        for item in graph.checkpointer.list(None, limit=1):
            return item.config["configurable"]["thread_id"]
    return None


def _is_batch(thread_id: str, batch: str) -> bool:
    return batch in (thread_id, thread_id.rpartition("-")[0])


def _new_thread(run_dir: Path, config: AgentsConfig, batch: str, previous: str | None) -> str:
    """The thread for ``batch``: its content id, plus a random part in a shared database."""
    if previous is not None and _is_batch(previous, batch):
        return previous
    if not config.checkpointer:
        return batch
    thread_id = f"{batch}-{secrets.token_hex(4)}"
    atomic_write_text(run_dir / THREAD_FILE, thread_id + "\n")
    return thread_id


@contextmanager
def _compiled(run_dir: Path, config: AgentsConfig) -> Iterator[Any]:
    with open_checkpointer(
        run_dir, config.checkpointer, config.checkpointer_password
    ) as checkpointer:
        yield build_graph().compile(checkpointer=checkpointer)


def _got_past_analyst(run_dir: Path, config: AgentsConfig, thread_id: str) -> bool:
    """A batch stopped by the analyst (invalid or conflicting edits) may be replaced."""
    with _compiled(run_dir, config) as graph:
        return bool((graph.get_state(_run_config(thread_id)).values or {}).get("shards"))


def _run_config(thread_id: str, config: AgentsConfig | None = None) -> dict[str, Any]:
    # shards run as parallel tasks, the teacher one at a time (one model on one device); when an
    # LLM writes and reads the prompts, two at a time: one asks the LLM while the other uses the
    # teacher (a local server answers one request at a time; more would queue into timeouts)
    out: dict[str, Any] = {"configurable": {"thread_id": thread_id}, "recursion_limit": 10_000}
    if config is not None and config.backend == "openai":
        out["max_concurrency"] = 2
    return out


def _log(run_dir: Path, line: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(run_dir / F.AGENTS_LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{stamp} pid={os.getpid()} {line}\n")


def _drive(
    graph: Any, payload: Any, cfg: dict, ctx: AgentsContext, run_dir: Path, progress: bool
) -> None:
    """Stream the graph to its next pause or end, with a progress bar over shards."""
    values = graph.get_state(cfg).values or {}
    total = len(values.get("shards", []))
    bar = tqdm(total=total or None, desc="agents", unit="shard", disable=not progress)
    bar.update(len(values.get("shard_log", {})))
    passed = failed = 0
    try:
        for mode, chunk in graph.stream(
            payload, cfg, context=ctx, stream_mode=["updates", "custom"], durability="sync"
        ):
            if mode != "custom":
                continue
            event = chunk.get("event")
            if event == "analyst":
                bar.reset(total=chunk["shards"])
                bar.set_description(f"agents: {chunk['edits']} edits")
                _log(run_dir, f"analyst edits={chunk['edits']} shards={chunk['shards']}")
                _notes(run_dir, chunk.get("notes", []))
            elif event == "questioner":
                bar.set_description(f"agents: {chunk['probes']} probes")
                _log(run_dir, f"questioner probes={chunk['probes']}")
                _notes(run_dir, chunk.get("notes", []))
            elif event == "critic":
                bar.set_postfix(round=chunk["round"], passed=passed, failed=failed)
            elif event == "shard":
                passed += chunk["passed"]
                failed += chunk["prompts"] - chunk["passed"]
                bar.update(1)
                bar.set_postfix(passed=passed, failed=failed)
                # the shard's node ran in this process (a resumed run does not re-run saved ones)
                _log(
                    run_dir,
                    f"shard {chunk['shard']} rounds={chunk['rounds']} "
                    f"prompts={chunk['prompts']} passed={chunk['passed']}",
                )
    finally:
        bar.close()


def _notes(run_dir: Path, notes: list[str]) -> None:
    """Notes of the analyst and the questioner: printed above the bar and kept in the log."""
    for note in notes:
        tqdm.write(f"skedit: note: {note}", file=sys.stderr)
        _log(run_dir, f"note {note}")


def write_outputs(run_dir: Path, values: dict[str, Any]) -> None:
    """The run directory files, rewritten from the graph's saved state."""
    if values.get("edits"):
        write_jsonl(run_dir / F.EDITS, [Edit.model_validate(e) for e in values["edits"]])
    if values.get("probes"):
        write_jsonl(run_dir / F.PROBES, [Probe.model_validate(p) for p in values["probes"]])
    prompts = sorted(
        (DensePrompt.model_validate(p) for p in values.get("prompts", {}).values()),
        key=lambda p: p.id,
    )
    if not prompts:
        return
    out = (run_dir / F.PROMPTS).parent
    write_jsonl(run_dir / F.PROMPTS, prompts)
    keep = {f"{p.id}.md" for p in prompts}
    for stale in out.glob("*.md"):
        if stale.name not in keep:
            stale.unlink()
    edits = {e["id"]: e for e in values.get("edits", [])}
    for p in prompts:
        atomic_write_text(out / f"{p.id}.md", render_markdown(p, edits, run_dir))


def render_markdown(p: DensePrompt, edits: dict[str, dict], run_dir: Path) -> str:
    """A prompt as a reviewer reads it in any editor."""
    s = summary(p)

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    lines = [
        f"# {p.id} — {p.status}",
        "",
        f"- facts: {len(p.edit_ids)}; tokens: {p.tokens}; facts per 100 tokens: "
        f"{p.facts_per_100_tokens:g}",
        f"- critic: {s['verdict']} (round {len(p.critiques)}); teacher edit accuracy "
        f"{pct(s['teacher_edit_accuracy'])}, locality {pct(s['teacher_locality'])}, "
        f"portability {pct(s['teacher_portability'])}",
    ]
    if p.reviewer_note:
        lines.append(f"- reviewer: {p.reviewer_note}")
    lines += ["", "## Prompt", "", "```text", p.text, "```", "", "## Facts", ""]
    for eid in p.edit_ids:
        e = edits.get(eid, {})
        lines.append(f"- `{eid}` {e.get('prompt', '?')!r} -> {e.get('target_new', '?')!r}")
    if s["problems"]:
        lines += ["", "## Critic's findings", ""] + [f"- {x}" for x in s["problems"]]
    if p.status in PENDING:
        lines += [
            "",
            f"Decide: `skedit review {run_dir} approve {p.id}` | "
            f"`reject {p.id} --reason ...` | `edit {p.id}`",
        ]
    return "\n".join(lines) + "\n"


def _finish(graph: Any, cfg: dict, run_dir: Path) -> Status:
    snap = graph.get_state(cfg)
    write_outputs(run_dir, snap.values or {})
    if snap.interrupts:
        _log(run_dir, "paused for review")
        return "awaiting_review"
    if snap.next:
        raise SkeditError(
            f"the agent graph stopped before {', '.join(snap.next)}", file=str(run_dir)
        )
    _log(run_dir, "done")
    return "done"


def auto_decision(values: dict[str, Any], *, approve_failed: bool = False) -> ReviewDecision:
    """What ``--auto-approve`` answers: approve what passed the critic, reject what failed
    (``approve_failed``: approve those too, see ``AgentsConfig.approve_failed``)."""
    decision = ReviewDecision()
    for pid, p in values.get("prompts", {}).items():
        if p.get("status") == "passed" or (approve_failed and p.get("status") in PENDING):
            decision.approve.append(pid)
        elif p.get("status") in PENDING:
            decision.reject[pid] = (
                "failed the critic; --auto-approve approves only passed prompts "
                "(agents.approve_failed: true approves them too)"
            )
    return decision


def run_agents(
    edits: list[Edit],
    run_dir: str | os.PathLike,
    *,
    model_path: str | os.PathLike,
    config: AgentsConfig,
    auto_approve: bool = False,
    progress: bool = True,
) -> Status:
    """Write, judge and (optionally auto-)review dense prompts for a batch; resumable.

    Running it again on the same directory and batch resumes the saved thread: finished shards
    are not redone. Returns ``"awaiting_review"`` or ``"done"``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    batch = thread_id_for(edits)
    previous = saved_thread(run_dir, config)
    if (
        previous is not None
        and not _is_batch(previous, batch)
        and _got_past_analyst(run_dir, config, previous)
    ):
        raise SkeditError(
            "this run directory already holds another batch of edits",
            file=str(run_dir),
            hint="use a new --run directory for a new batch",
        )
    thread_id = _new_thread(run_dir, config, batch, previous)
    _write_run_config(run_dir, str(model_path), config)
    ctx = AgentsContext(config=config, model_path=str(model_path))
    if hasattr(ctx.backend, "log_path"):  # an LLM backend: one line per request
        ctx.backend.log_path = run_dir / F.LLM_CALLS
    cfg = _run_config(thread_id, config)
    with _compiled(run_dir, config) as graph:
        if config.checkpointer_password:
            print(
                "skedit: note: the password in the checkpointer URL is used by this process only "
                "and is not saved; for `skedit review` set PGPASSWORD or use ~/.pgpass",
                file=sys.stderr,
            )
        snap = graph.get_state(cfg)
        if not snap.values:
            where = describe(config.checkpointer) if config.checkpointer else CHECKPOINTS
            _log(run_dir, f"start thread={thread_id} edits={len(edits)} checkpoints={where}")
            payload: Any = {"edits": [e.model_dump(mode="json") for e in edits]}
        else:
            _log(run_dir, f"resume thread={thread_id}")
            payload = None
        if not snap.interrupts and (payload is not None or snap.next):
            _drive(graph, payload, cfg, ctx, run_dir, progress)
        status = _finish(graph, cfg, run_dir)
        while status == "awaiting_review" and auto_approve:
            decision = auto_decision(
                graph.get_state(cfg).values, approve_failed=config.approve_failed
            )
            _log(run_dir, "auto-approve")
            _drive(graph, Command(resume=decision.model_dump()), cfg, ctx, run_dir, progress)
            status = _finish(graph, cfg, run_dir)
        return status


def _pending_ids(values: dict[str, Any]) -> set[str]:
    return {pid for pid, p in values.get("prompts", {}).items() if p.get("status") in PENDING}


def submit_review(
    run_dir: str | os.PathLike,
    decision: ReviewDecision | dict,
    *,
    model_path: str | os.PathLike | None = None,
    config: AgentsConfig | None = None,
    progress: bool = True,
) -> Status:
    """Answer the review interrupt of the run's saved thread (from any process) and resume."""
    run_dir = Path(run_dir)
    saved = read_run_config(run_dir)
    config = config or AgentsConfig.from_dict(saved.get("agents"))
    thread_id = saved_thread(run_dir, config)
    if thread_id is None:
        raise SkeditError(
            "no agent run here",
            file=str(run_dir),
            hint="start one with: skedit agents run EDITS --run DIR",
        )
    try:
        decision = ReviewDecision.model_validate(
            decision.model_dump() if isinstance(decision, ReviewDecision) else decision
        )
    except ValidationError as exc:
        raise SkeditError(f"not a valid review decision: {exc}") from exc
    model_path = model_path or saved.get("model")
    ctx = AgentsContext(config=config, model_path=str(model_path))
    if hasattr(ctx.backend, "log_path"):  # an LLM backend: one line per request
        ctx.backend.log_path = run_dir / F.LLM_CALLS
    cfg = _run_config(thread_id, config)
    with _compiled(run_dir, config) as graph:
        snap = graph.get_state(cfg)
        if not snap.interrupts:
            state = "finished" if snap.values and not snap.next else "not waiting for review"
            raise SkeditError(f"the agent run is {state}; nothing to review", file=str(run_dir))
        pending = _pending_ids(snap.values)
        unknown = sorted(decision.named() - pending)
        if unknown:
            raise SkeditError(
                f"not a prompt waiting for review: {', '.join(unknown)}",
                file=str(run_dir),
                hint=f"waiting: {', '.join(sorted(pending)) or 'none'}",
            )
        empty = [pid for pid, text in decision.edit.items() if not text.strip()]
        if empty:
            raise SkeditError(f"edited text is empty for {', '.join(empty)}")
        _log(run_dir, f"review {decision.model_dump_json()}")
        _drive(graph, Command(resume=decision.model_dump()), cfg, ctx, run_dir, progress)
        return _finish(graph, cfg, run_dir)


def load_prompts(run_dir: str | os.PathLike) -> list[DensePrompt]:
    """The run's dense prompts with their current status (``DIR/prompts/prompts.jsonl``)."""
    path = Path(run_dir) / F.PROMPTS
    if not path.exists():
        raise SkeditError(
            "no prompts yet", file=str(path), hint="run: skedit agents run EDITS --run DIR"
        )
    return read_jsonl(path, DensePrompt)


def run_status(run_dir: str | os.PathLike) -> Status | Literal["running", "new"]:
    """Where the run's thread stands, from its checkpoints."""
    run_dir = Path(run_dir)
    config = saved_config(run_dir)
    thread_id = saved_thread(run_dir, config)
    if thread_id is None:
        return "new"
    with _compiled(run_dir, config) as graph:
        snap = graph.get_state(_run_config(thread_id))
        if snap.interrupts:
            return "awaiting_review"
        return "running" if snap.next or not snap.values else "done"
