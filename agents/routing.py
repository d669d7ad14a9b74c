"""Pure routers: state in, next node out. No model, no I/O; unit-tested on their own."""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END
from langgraph.types import Send

from skedit.agents.state import BatchState, ShardState

PENDING = ("draft", "passed", "failed")  # statuses still waiting for a reviewer's decision


def route_after_critic(state: ShardState) -> Literal["writer", "__end__"]:
    """Back to the writer while a group asks for revision and rounds are left."""
    if state.get("round", 0) >= state.get("max_rounds", 1):
        return END
    if any(g.get("status") == "revise" for g in state.get("groups", [])):
        return "writer"
    return END


def fan_out(state: BatchState) -> list[Send]:
    """One ``shard`` task per shard, carrying only that shard's edits and probes."""
    edits = {e["id"]: e for e in state.get("edits", [])}
    sends = []
    for s in state.get("shards", []):
        ids = set(s["edit_ids"])
        sends.append(
            Send(
                "shard",
                {
                    "shard_id": s["id"],
                    "edits": [edits[i] for i in s["edit_ids"]],
                    "probes": [p for p in state.get("probes", []) if p.get("edit_id") in ids],
                    "groups": [
                        {"edit_ids": list(s["edit_ids"]), "status": "draft", "revisions": 0}
                    ],
                    "sentence_form": [],
                    "statement_form": [],
                    "round": 0,
                    "max_rounds": s.get("max_rounds", 1),
                },
            )
        )
    return sends


def route_after_review(state: BatchState) -> Literal["recheck", "review", "finish"]:
    """Edited prompts go to the critic first; undecided prompts go back to the reviewer."""
    if state.get("recheck"):
        return "recheck"
    if any(p.get("status") in PENDING for p in state.get("prompts", {}).values()):
        return "review"
    return "finish"
