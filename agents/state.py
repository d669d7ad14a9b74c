"""Graph state: JSON only (pydantic ``model_dump(mode="json")``), so any checkpointer can store it.

Heavy objects (teacher, tokenizer, LLM client) never live here; they travel in the graph's
context (:mod:`skedit.agents.context`).
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from skedit.prompts.schema import DensePrompt, Edit, Probe

Json = dict[str, Any]


def merge_by_key(left: dict[str, Json] | None, right: dict[str, Json] | None) -> dict[str, Json]:
    """Reducer for keyed records written by parallel shards: the newer record of an id wins."""
    out = dict(left or {})
    out.update(right or {})
    return out


class BatchState(TypedDict, total=False):
    """The parent graph's state: one batch of edits on one thread."""

    edits: list[Json]  # Edit dumps; the analyst replaces the input with normalised edits
    problems: list[str]  # what the analyst dropped or noticed (shown to the user)
    shards: list[Json]  # {"id": str, "edit_ids": [str], "max_rounds": int}
    probes: list[Json]  # Probe dumps: every edit's edit/rephrase/portability/locality probes
    prompts: Annotated[dict[str, Json], merge_by_key]  # DensePrompt dumps by id
    shard_log: Annotated[dict[str, Json], merge_by_key]  # shard id -> {"rounds", "prompt_ids"}
    recheck: list[str]  # prompt ids edited by the reviewer, waiting for the critic
    review_rounds: int


class Group(TypedDict, total=False):
    """Facts that will become one dense prompt, and what the critic said about them."""

    edit_ids: list[str]
    text: str
    status: str  # draft | passed | revise | failed
    revisions: int
    feedback: Json  # {"failed_edits": [...], "locality": bool, "missing": [...], "budget": bool}
    critiques: list[Json]


class ShardState(TypedDict, total=False):
    """One shard's writer/critic loop (a subgraph run per ``Send``)."""

    shard_id: str
    edits: list[Json]
    probes: list[Json]
    groups: list[Group]
    sentence_form: list[str]  # edit ids the writer states as full sentences
    statement_form: list[str]  # edit ids the writer takes out of relation tables (compact)
    round: int  # critic rounds done
    max_rounds: int  # the loop's bound, copied from the config by the analyst


def edits_of(state: BatchState | ShardState) -> list[Edit]:
    return [Edit.model_validate(e) for e in state.get("edits", [])]


def probes_of(state: BatchState | ShardState) -> list[Probe]:
    return [Probe.model_validate(p) for p in state.get("probes", [])]


def dump(model: Edit | Probe | DensePrompt) -> Json:
    return model.model_dump(mode="json")
