"""Writer: one dense prompt per group of facts, revised from the critic's concrete feedback.

The revision ladder (per group, by how often it was revised): state each failing fact one step
plainer (a relation table's row becomes a compact statement, a compact statement a full
sentence; with no plainer form the failing facts move to the front), then split the failing
facts off, then halve what still fails. A locality or budget failure halves the group: fewer
facts in the context leak less into unrelated answers.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from skedit.agents.backends.layout import table_rows, written_relation
from skedit.agents.context import AgentsContext
from skedit.agents.state import Group, ShardState, edits_of
from skedit.prompts.schema import Edit


def _halves(ids: list[str]) -> list[list[str]]:
    mid = (len(ids) + 1) // 2
    return [ids[:mid], ids[mid:]] if len(ids) > 1 else [ids]


def revise(
    group: Group,
    edits: dict[str, Edit],
    sentence_form: set[str],
    statement_form: set[str] | None = None,
    *,
    layout: str = "statements",
) -> list[Group]:
    """Apply the critic's feedback: new groups (draft); facts may move to ``statement_form``
    (out of their table) or ``sentence_form`` (a full sentence), both updated in place."""
    statement_form = set() if statement_form is None else statement_form
    fb = group.get("feedback") or {}
    ids = list(group["edit_ids"])
    n = group.get("revisions", 0) + 1
    failed = [i for i in ids if i in set(fb.get("failed_edits", []))]
    if fb.get("budget") or fb.get("locality"):
        parts = _halves(ids)
    elif fb.get("missing") or not failed:
        parts = [ids]  # rewrite (an LLM writer gets the problems); rules text is unchanged
    elif n == 1:
        rows = table_rows(
            [edits[i] for i in ids], layout=layout, out_of_table=statement_form | sentence_form
        )
        tabled = {i for i in failed if i in rows}
        compact = [
            i
            for i in failed
            if written_relation(edits[i]) and i not in sentence_form and i not in tabled
        ]
        statement_form.update(tabled)
        sentence_form.update(compact)
        rest = [i for i in ids if i not in failed]
        # no plainer form: reorder, failing first
        parts = [ids] if tabled or compact else [failed + rest]
    elif n == 2 and len(failed) < len(ids):
        parts = [failed, [i for i in ids if i not in failed]]
    else:
        parts = _halves(failed) + ([rest] if (rest := [i for i in ids if i not in failed]) else [])
    parts = [p for p in parts if p]
    # a split-off group is a new prompt: the old critiques judged other text with other facts
    history = list(group.get("critiques", [])) if len(parts) == 1 else []
    return [
        Group(edit_ids=p, status="draft", revisions=n, critiques=list(history), feedback=fb)
        for p in parts
    ]


def writer(state: ShardState, runtime: Runtime[AgentsContext]) -> ShardState:
    ctx = runtime.context
    edits = {e.id: e for e in edits_of(state)}
    sentence_form = set(state.get("sentence_form", []))
    statement_form = set(state.get("statement_form", []))
    groups: list[Group] = []
    for g in state["groups"]:
        status = g.get("status", "draft")
        if status == "revise":
            groups += revise(g, edits, sentence_form, statement_form, layout=ctx.config.layout)
        elif status == "draft" and not g.get("text"):
            groups.append(Group(**{**g, "status": "draft"}))
        else:
            groups.append(g)
    for g in groups:
        if g["status"] == "draft":
            feedback = list((g.get("feedback") or {}).get("problems", []))
            g["text"] = ctx.backend.write(
                [edits[i] for i in g["edit_ids"]],
                sentence_form=sentence_form,
                feedback=feedback,
                statement_form=statement_form,
            )
    return {
        "groups": groups,
        "sentence_form": sorted(sentence_form),
        "statement_form": sorted(statement_form),
    }
