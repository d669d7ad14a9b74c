"""Review: one ``interrupt()`` per batch, after every shard is written and judged.

The interrupt carries every prompt with its critic report and fact density; the answer
(:class:`ReviewDecision`) approves, rejects or edits prompts by id. An edited prompt goes back
through the critic (``recheck``) before it counts as approved. Nothing here runs before the
``interrupt()`` that has side effects: the node re-runs from its top on resume.
"""

from __future__ import annotations

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field

from skedit.agents.context import AgentsContext
from skedit.agents.nodes.critic import judge
from skedit.agents.routing import PENDING
from skedit.agents.state import BatchState, Json, edits_of, probes_of
from skedit.prompts.schema import DensePrompt


class ReviewDecision(BaseModel):
    """A reviewer's answer. Ids not named stay pending (the graph asks again)."""

    model_config = ConfigDict(extra="forbid")

    approve_all: bool = Field(default=False, description="approve every prompt still pending")
    approve: list[str] = Field(default_factory=list, description="prompt ids to approve")
    reject: dict[str, str] = Field(default_factory=dict, description="prompt id -> reason")
    edit: dict[str, str] = Field(default_factory=dict, description="prompt id -> new text")

    def named(self) -> set[str]:
        return set(self.approve) | set(self.reject) | set(self.edit)


def summary(p: DensePrompt) -> Json:
    """One prompt as the reviewer (and ``skedit review --json``) sees it."""
    last = p.last_critique
    return {
        "id": p.id,
        "edit_ids": p.edit_ids,
        "tokens": p.tokens,
        "facts_per_100_tokens": p.facts_per_100_tokens,
        "teacher_edit_accuracy": last.teacher_edit_accuracy if last else None,
        "teacher_locality": last.teacher_locality if last else None,
        "teacher_portability": last.teacher_portability if last else None,
        "verdict": ("passed" if last.passed else "failed") if last else "unchecked",
        "status": p.status,
        "text": p.text,
        "problems": last.problems if last else [],
    }


def apply_decision(
    prompts: dict[str, Json], decision: ReviewDecision
) -> tuple[dict[str, Json], list[str]]:
    """New prompt records and the ids to re-check. Unknown ids are ignored (checked earlier)."""
    out: dict[str, Json] = {}
    recheck: list[str] = []
    for pid, raw in prompts.items():
        if raw.get("status") not in PENDING:
            continue
        p = DensePrompt.model_validate(raw)
        if pid in decision.reject:
            p.status, p.reviewer_note = "rejected", decision.reject[pid] or "rejected"
        elif pid in decision.edit:
            p.text, p.status = decision.edit[pid].strip(), "draft"
            p.reviewer_note = "edited by the reviewer"
            recheck.append(pid)
        elif pid in decision.approve or decision.approve_all:
            p.status = "approved"
        else:
            continue
        out[pid] = p.model_dump(mode="json")
    return out, recheck


def review(state: BatchState, runtime: Runtime[AgentsContext]) -> BatchState:
    prompts = state.get("prompts", {})
    pending = [
        DensePrompt.model_validate(p) for p in prompts.values() if p.get("status") in PENDING
    ]
    if not pending:
        return {}
    answer = interrupt(
        {
            "message": "review the dense prompts: approve, reject (with a reason) or edit by id",
            "prompts": [summary(p) for p in sorted(pending, key=lambda p: p.id)],
        },
        response_schema=ReviewDecision,
    )
    decision = (
        answer if isinstance(answer, ReviewDecision) else ReviewDecision.model_validate(answer)
    )
    updated, recheck = apply_decision(prompts, decision)
    return {
        "prompts": updated,
        "recheck": recheck,
        "review_rounds": state.get("review_rounds", 0) + 1,
    }


def recheck(state: BatchState, runtime: Runtime[AgentsContext]) -> BatchState:
    """The critic on reviewer-edited prompts: passed -> ``edited`` (approved), else ``failed``."""
    ctx = runtime.context
    edits = {e.id: e for e in edits_of(state)}
    prompts = {pid: DensePrompt.model_validate(state["prompts"][pid]) for pid in state["recheck"]}
    items = [([edits[i] for i in p.edit_ids if i in edits], p.text) for p in prompts.values()]
    rounds = [len(p.critiques) + 1 for p in prompts.values()]
    verdicts = judge(items, probes_of(state), ctx, max(rounds, default=1))
    out: dict[str, Json] = {}
    for p, v in zip(prompts.values(), verdicts, strict=True):
        p.critiques.append(v.critique)
        p.tokens = ctx.context_tokens(p.text)
        p.facts_per_100_tokens = round(100.0 * len(p.edit_ids) / max(p.tokens, 1), 2)
        p.status = "edited" if v.critique.passed else "failed"
        out[p.id] = p.model_dump(mode="json")
    return {"prompts": out, "recheck": []}


def finish(state: BatchState) -> BatchState:
    """Every prompt is decided; the workflow writes the run directory from this state."""
    return {}
