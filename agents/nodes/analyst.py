"""Analyst: validate and normalise the batch, stop on conflicts, group, shard.

Facts are grouped by relation when the writer lays them out as relation tables (a shard then
holds whole tables), else by subject. Shards are sized with the teacher's own tokenizer on the
rendered context (what the teacher will really read), and capped at ``max_facts`` facts.
"""

from __future__ import annotations

from collections.abc import Callable

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from skedit.agents.backends.layout import layout_text, table_rows
from skedit.agents.config import AgentsConfig
from skedit.agents.context import AgentsContext
from skedit.agents.state import BatchState, dump, edits_of
from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import Edit, content_id
from skedit.prompts.validate import check_edits


def normalise(edits: list[Edit], config: AgentsConfig) -> tuple[list[Edit], list[str]]:
    """Drop exact duplicates; stop on invalid records and (unless allowed) on conflicts.

    Returns the kept edits and notes about what was dropped. Conflicts name both records.
    """
    notes: list[str] = []
    kept: list[Edit] = []
    seen: dict[str, Edit] = {}
    for e in edits:
        if e.id in seen and seen[e.id] == e:
            notes.append(f"dropped an exact duplicate of edit {e.id}")
            continue
        seen.setdefault(e.id, e)
        kept.append(e)
    problems = check_edits(kept)
    conflicts = [p for p in problems if "conflicts with" in p.message]
    others = [p for p in problems if p not in conflicts]
    if others:
        lines = "\n  ".join(p.render() for p in others)
        raise SkeditError(
            f"{len(others)} invalid edit(s) in the batch:\n  {lines}",
            hint="fix these records (or drop them) and run again",
        )
    if conflicts and not config.allow_conflicts:
        lines = "\n  ".join(p.render() for p in conflicts)
        raise SkeditError(
            f"{len(conflicts)} conflicting edit(s): the same question gets different answers:"
            f"\n  {lines}",
            hint="keep one edit per question, or pass --allow-conflicts to keep the first",
        )
    if conflicts:
        where = {str(e.source if e.source is not None else i): i for i, e in enumerate(kept)}
        drop = {where[str(p.record)] for p in conflicts if str(p.record) in where}
        notes += [f"conflict, kept the first: {p.render()}" for p in conflicts]
        kept = [e for i, e in enumerate(kept) if i not in drop]
    return kept, notes


def unknown_words(edits: list[Edit], tokenizer, *, show: int = 5) -> list[str]:
    """Notes on facts the teacher cannot read: words its tokenizer maps to the unknown token.

    Byte-level tokenizers (GPT-2, Llama) have none; a word-level one (the synthetic world's
    model knows only its world's names) turns every other name into ``<unk>``, and a teacher
    can then neither read the fact nor say its target.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return []
    bad: list[str] = []
    for e in edits:
        words = [
            w
            for text in (e.subject, e.target_new)
            for w in text.split()
            if unk in tokenizer(w, add_special_tokens=False)["input_ids"]
        ]
        if words:
            where = e.source if e.source is not None else e.id
            bad.append(f"{where}: {', '.join(map(repr, dict.fromkeys(words)))}")
    if not bad:
        return []
    more = f" and {len(bad) - show} more" if len(bad) > show else ""
    return [
        f"{len(bad)} edit(s) name words the teacher's tokenizer does not know (read as "
        f"{tokenizer.unk_token}): {'; '.join(bad[:show])}{more}. The teacher cannot read or "
        "answer these facts; use a model whose vocabulary has them"
    ]


def group_by_subject(edits: list[Edit]) -> list[list[Edit]]:
    """Edits of one subject together, subjects in order of first appearance."""
    groups: dict[str, list[Edit]] = {}
    for e in edits:
        groups.setdefault(e.subject.strip().lower(), []).append(e)
    return list(groups.values())


def group_by_relation(edits: list[Edit]) -> list[list[Edit]]:
    """Edits of one relation together (one table each), in order of first appearance; edits
    without a relation grouped by subject after them."""
    groups: dict[tuple[str, str], list[Edit]] = {}
    for e in edits:
        key = ("r", e.relation.strip()) if e.relation else ("s", e.subject.strip().lower())
        groups.setdefault(key, []).append(e)
    return sorted(groups.values(), key=lambda g: not g[0].relation)


def shard(
    edits: list[Edit],
    *,
    max_tokens: int,
    max_facts: int,
    context_tokens: Callable[[str], int],
    layout: str = "statements",
    max_statements: int | None = None,
) -> list[list[Edit]]:
    """Pack groups (of a subject; of a relation with ``layout="tables"``) into shards whose
    rendered context fits ``max_tokens`` and holds at most ``max_facts`` facts, of which at most
    ``max_statements`` are written one by one (a teacher reads a table's rows more easily than
    as many sentences: the world model reads 32 rows, and 16 statements).

    A group stays in one shard when it fits. One that fits no shard is cut into as few
    near-equal parts as fit (40 facts at 32 a shard: 20 + 20, not 32 + 8; a teacher reads a
    shorter table better); a fact that alone exceeds the budget gets a shard of its own (the
    critic reports it as over budget rather than dropping it).
    """
    shards: list[list[Edit]] = []
    current: list[Edit] = []

    def fits(batch: list[Edit]) -> bool:
        if len(batch) > max_facts:
            return False
        statements = len(batch) - len(table_rows(batch, layout=layout))
        if max_statements is not None and statements > max_statements:
            return False
        return context_tokens(layout_text(batch, layout=layout)) <= max_tokens

    grouped = group_by_relation(edits) if layout == "tables" else group_by_subject(edits)
    for group in grouped:
        parts = [group]
        while len(parts[0]) > 1 and not all(fits(p) for p in parts):
            n = len(parts) + 1
            parts = [group[i * len(group) // n : (i + 1) * len(group) // n] for i in range(n)]
        for part in parts:
            if current and not fits(current + part):
                shards.append(current)
                current = []
            for e in part:
                if current and not fits([*current, e]):
                    shards.append(current)
                    current = []
                current.append(e)
    if current:
        shards.append(current)
    return shards


def analyst(state: BatchState, runtime: Runtime[AgentsContext]) -> BatchState:
    ctx = runtime.context
    edits = edits_of(state)
    if not edits:
        raise SkeditError("the batch has no edits", hint="check the EDITS file")
    edits, notes = normalise(edits, ctx.config)
    notes += unknown_words(edits, ctx.tokenizer())
    shards = shard(
        edits,
        max_tokens=ctx.config.shard_tokens,
        max_facts=ctx.config.max_facts,
        context_tokens=ctx.context_tokens,
        layout=ctx.config.layout,
        max_statements=ctx.config.max_statements,
    )
    rows = [
        {
            "id": content_id([e.id for e in s], prefix="s-", length=8),
            "edit_ids": [e.id for e in s],
            "max_rounds": ctx.config.max_rounds,
        }
        for s in shards
    ]
    get_stream_writer()(
        {"event": "analyst", "edits": len(edits), "shards": len(rows), "notes": notes}
    )
    return {"edits": [dump(e) for e in edits], "problems": notes, "shards": rows}
