"""Critic: coverage, budget, contradictions, then the real teacher reading the prompt.

With the prompt as context the teacher must answer each edit prompt and rephrase with the new
target (``teacher_edit_accuracy``), each multi-hop probe through it (``teacher_portability``),
and keep its pre-edit answer on unrelated probes (``teacher_locality``). Failures are concrete
(which fact, what the teacher said) so the writer can act on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from skedit.agents.context import AgentsContext
from skedit.agents.nodes.questioner import edited_questions
from skedit.agents.state import ShardState, edits_of, probes_of
from skedit.prompts.answers import first_answer, matches, normalise, same_answer
from skedit.prompts.render import context_prefix
from skedit.prompts.schema import Critique, Edit, Probe

MAX_LISTED = 6  # failures spelled out per critique; the rest are counted


@dataclass
class Verdict:
    critique: Critique
    failed_edits: list[str] = field(default_factory=list)
    locality_edits: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    over_budget: bool = False

    def feedback(self) -> dict:
        return {
            "failed_edits": self.failed_edits,
            "locality": self.locality_edits,
            "missing": self.missing,
            "budget": self.over_budget,
            "problems": self.critique.problems,
        }


def static_problems(
    edits: list[Edit], text: str, ctx: AgentsContext
) -> tuple[list[str], list[str], bool]:
    """(problems, ids of facts not covered, over budget) — no model needed."""
    problems: list[str] = []
    low = text.lower()
    missing = [
        e.id for e in edits if e.subject.lower() not in low or e.target_new.lower() not in low
    ]
    for e in edits:
        if e.id in missing:
            problems.append(f"fact {e.id} not covered: needs {e.subject!r} and {e.target_new!r}")
    tokens = ctx.context_tokens(text)
    over = tokens > ctx.config.shard_tokens
    if over:
        problems.append(f"over budget: {tokens} context tokens > {ctx.config.shard_tokens}")
    seen: dict[tuple[str, str], Edit] = {}
    for e in edits:
        key = (e.subject.lower(), (e.relation or e.prompt).lower())
        if key in seen and seen[key].target_new.lower() != e.target_new.lower():
            problems.append(
                f"contradiction: {e.id} and {seen[key].id} give {e.subject!r} two answers "
                f"({seen[key].target_new!r}, {e.target_new!r})"
            )
        seen.setdefault(key, e)
    return problems, missing, over


def _agrees(generation: str, expected: str | None) -> bool:
    if expected is None:
        return True
    return same_answer(generation, expected)


def _mean(xs: list[bool]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


FIGURE_LOCALITY = 2  # locality probes per edit asked when they cannot fail a prompt


def scored_probes(edits: list[Edit], by_edit: dict[str, list[Probe]]) -> list[Probe]:
    """The probes a prompt stating ``edits`` is checked on (the critic and bench_agents alike).

    Left out: locality probes that ask about a fact stated in this very prompt (they are not
    "unrelated"), and unanswered probes (generated multi-hop questions: the teacher's answer
    is their target, there is nothing to score it against).
    """
    asked = edited_questions(edits)
    return [
        p
        for e in edits
        for p in by_edit.get(e.id, [])
        if not p.unanswered and not (p.kind == "locality" and normalise(p.prompt) in asked)
    ]


def _checked(probes: list[Probe], cfg) -> list[Probe]:
    """The probes the teacher answers. A locality threshold of 0 cannot fail a prompt: then
    only the first ``FIGURE_LOCALITY`` locality probes per edit are asked, for the reviewer's
    figure (training takes locality answers from the base model, never from the teacher); and
    ``critic_rephrases`` (> 0) caps the rephrases asked per edit."""
    cap = {"locality": FIGURE_LOCALITY if cfg.min_locality <= 0 else None}
    cap["rephrase"] = cfg.critic_rephrases or None
    seen: dict[tuple[str, str], int] = {}
    out = []
    for p in probes:
        key = (p.kind, p.edit_id or "")
        seen[key] = seen.get(key, 0) + 1
        if cap.get(p.kind) is not None and seen[key] > cap[p.kind]:
            continue
        out.append(p)
    return out


def judge(
    items: list[tuple[list[Edit], str]], probes: list[Probe], ctx: AgentsContext, round_: int
) -> list[Verdict]:
    """Critique several prompts at once (one batched teacher pass over all their probes)."""
    from skedit.sft.modelops import generate

    by_edit: dict[str, list[Probe]] = {}
    for p in probes:
        by_edit.setdefault(p.edit_id or "", []).append(p)
    verdicts: list[Verdict | None] = []
    jobs: list[tuple[int, Probe]] = []
    for i, (edits, text) in enumerate(items):
        problems, missing, over = static_problems(edits, text, ctx)
        if problems:  # not worth the teacher's time until the text is right
            crit = Critique(round=round_, passed=False, problems=problems)
            verdicts.append(Verdict(crit, missing=missing, over_budget=over))
            continue
        verdicts.append(None)
        jobs += [(i, p) for p in _checked(scored_probes(edits, by_edit), ctx.config)]
    if jobs:
        model, tok = ctx.teacher()
        with ctx.lock:
            gens = generate(
                model,
                tok,
                [p.prompt for _, p in jobs],
                prefixes=[context_prefix(items[i][1]) for i, _ in jobs],
                max_new_tokens=ctx.config.probe_max_new_tokens,
                batch_size=ctx.config.batch_size,
            )
    else:
        gens = []
    results: dict[int, list[tuple[Probe, str]]] = {}
    for (i, p), g in zip(jobs, gens, strict=True):
        results.setdefault(i, []).append((p, g))
    out: list[Verdict] = []
    for i, v in enumerate(verdicts):
        if v is None:
            v = _verdict(results.get(i, []), ctx, round_)
            # an LLM reader's remarks are advice for the reviewer; they never decide the verdict
            notes = ctx.backend.review_text(items[i][0], items[i][1])
            v.critique.problems += [f"note: {n}" for n in notes]
        out.append(v)
    return out


def _verdict(rows: list[tuple[Probe, str]], ctx: AgentsContext, round_: int) -> Verdict:
    cfg = ctx.config
    edit_ok: list[bool] = []
    port_ok: list[bool] = []
    loc_ok: list[bool] = []
    failed: list[str] = []
    loc_failed: list[str] = []
    problems: list[str] = []
    for p, g in rows:
        if p.kind == "locality":
            ok = _agrees(g, p.expected)
            loc_ok.append(ok)
            if not ok:
                loc_failed.append(p.edit_id or "")
                problems.append(
                    f"locality: {p.prompt!r} -> {first_answer(g)!r}, before the edit {p.expected!r}"
                )
            continue
        ok = matches(g, p.answers)
        (port_ok if p.kind == "portability" else edit_ok).append(ok)
        if not ok and (p.kind != "portability" or cfg.min_portability > 0):
            failed.append(p.edit_id or "")
        if not ok:
            problems.append(f"{p.kind}: {p.prompt!r} -> {first_answer(g)!r}, want {p.answers[0]!r}")
    acc, port, loc = _mean(edit_ok), _mean(port_ok), _mean(loc_ok)
    passed = (
        (acc is None or acc >= cfg.min_edit_accuracy)
        and (loc is None or loc >= cfg.min_locality)
        and (port is None or port >= cfg.min_portability)
    )
    if len(problems) > MAX_LISTED:
        problems = problems[:MAX_LISTED] + [f"... and {len(problems) - MAX_LISTED} more"]
    crit = Critique(
        round=round_,
        passed=passed,
        problems=problems,
        teacher_edit_accuracy=acc,
        teacher_locality=loc,
        teacher_portability=port,
    )
    return Verdict(crit, failed_edits=sorted(set(failed)), locality_edits=sorted(set(loc_failed)))


def critic(state: ShardState, runtime: Runtime[AgentsContext]) -> ShardState:
    """Judge every freshly written group; mark what to revise, or fail it when out of rounds."""
    ctx = runtime.context
    edits = {e.id: e for e in edits_of(state)}
    round_ = state.get("round", 0) + 1
    groups = [dict(g) for g in state["groups"]]
    todo = [g for g in groups if g.get("status") == "draft"]
    verdicts = judge(
        [([edits[i] for i in g["edit_ids"]], g["text"]) for g in todo],
        probes_of(state),
        ctx,
        round_,
    )
    last = round_ >= ctx.config.max_rounds
    for g, v in zip(todo, verdicts, strict=True):
        g["critiques"] = [*g.get("critiques", []), v.critique.model_dump(mode="json")]
        g["feedback"] = v.feedback()
        g["status"] = "passed" if v.critique.passed else ("failed" if last else "revise")
    get_stream_writer()(
        {
            "event": "critic",
            "shard": state.get("shard_id"),
            "round": round_,
            "passed": sum(g["status"] == "passed" for g in todo),
            "judged": len(todo),
        }
    )
    return {"groups": groups, "round": round_}
