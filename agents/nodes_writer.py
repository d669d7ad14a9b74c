"""Writer: one dense prompt per group of facts, revised from the critic's concrete feedback.

The revision ladder (per group, by how often it was revised): state failing facts more plainly
(grouped -> compact -> full sentence; a fact with no compact form moves to the front instead),
then split the failing facts off, then halve what still fails. A locality or budget failure halves the group:
fewer facts in the context leak less into unrelated answers.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from skedit.agents.context import AgentsContext
from skedit.agents.state import Group, ShardState, edits_of
from skedit.prompts.schema import Edit


def _halves(ids: list[str]) -> list[list[str]]:
    mid = (len(ids) + 1) // 2
    return [ids[:mid], ids[mid:]] if len(ids) > 1 else [ids]


def _plainer(i: str, edit: Edit, sentence_form: set[str], explicit_form: set[str] | None) -> bool:
    """State one fact a step more plainly (grouped -> compact -> sentence); False at the end."""
    if not edit.relation or i in sentence_form:
        return False
    if explicit_form is not None and i not in explicit_form:
        explicit_form.add(i)
    else:
        sentence_form.add(i)
    return True


def revise(
    group: Group,
    edits: dict[str, Edit],
    sentence_form: set[str],
    explicit_form: set[str] | None = None,
) -> list[Group]:
    """Apply the critic's feedback: new groups (draft), and facts stated more plainly.

    ``explicit_form`` is given when the writer starts from the grouped notation: a failing
    grouped fact is first stated compactly, which adds one rung to the ladder.
    """
    fb = group.get("feedback") or {}
    ids = list(group["edit_ids"])
    n = group.get("revisions", 0) + 1
    plain_rungs = 1 if explicit_form is None else 2
    failed = [i for i in ids if i in set(fb.get("failed_edits", []))]
    if fb.get("budget") or fb.get("locality"):
        parts = _halves(ids)
    elif fb.get("missing") or not failed:
        parts = [ids]  # rewrite (an LLM writer gets the problems); rules text is unchanged
    elif n <= plain_rungs:
        plainer = [i for i in failed if _plainer(i, edits[i], sentence_form, explicit_form)]
        rest = [i for i in ids if i not in failed]
        parts = [ids] if plainer else [failed + rest]  # no compact form: reorder, failing first
    elif n == plain_rungs + 1 and len(failed) < len(ids):
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
    grouped = ctx.config.notation == "grouped" and ctx.backend.name == "rules"
    explicit_form = set(state.get("explicit_form", [])) if grouped else None
    groups: list[Group] = []
    for g in state["groups"]:
        status = g.get("status", "draft")
        if status == "revise":
            groups += revise(g, edits, sentence_form, explicit_form)
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
                explicit_form=explicit_form or set(),
            )
    return {
        "groups": groups,
        "sentence_form": sorted(sentence_form),
        "explicit_form": sorted(explicit_form or ()),
    }
