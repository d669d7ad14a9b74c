"""Questioner: every edit's probes, before any prompt is written.

Keeps what the dataset gives (rephrases, portability, locality) and fills what is missing.
Rules use *relation templates*: an edit's prompt with its subject cut out is a way to ask that
relation, so another edit with the same relation gets a rephrase from it, and a subject gets a
locality probe for a relation it is not edited on. Locality answers are the pre-edit model's own
greedy answers (no context): that is what "unchanged" means.
"""

from __future__ import annotations

import re

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from skedit.agents.config import AgentsConfig
from skedit.agents.context import AgentsContext
from skedit.agents.state import BatchState, dump, edits_of
from skedit.prompts.answers import first_answer
from skedit.prompts.schema import Edit, Probe


def template_of(text: str, subject: str) -> str | None:
    """``text`` with its subject replaced by ``{}`` (None when the subject is absent)."""
    m = re.search(re.escape(subject), text, flags=re.IGNORECASE)
    if not m:
        return None
    return text[: m.start()] + "{}" + text[m.end() :]


def relation_templates(edits: list[Edit]) -> dict[str, list[str]]:
    """Per relation, the distinct ways the batch asks it, in order of appearance."""
    out: dict[str, list[str]] = {}
    for e in edits:
        if not e.relation:
            continue
        for text in [e.prompt, *e.rephrases]:
            t = template_of(text, e.subject)
            if t and t not in out.setdefault(e.relation, []):
                out[e.relation].append(t)
    return out


def portability_templates(edits: list[Edit]) -> dict[str, list[tuple[str, str | None]]]:
    """Per relation, the distinct multi-hop questions of the batch (template, subkind)."""
    out: dict[str, list[tuple[str, str | None]]] = {}
    for e in edits:
        if not e.relation:
            continue
        for p in e.portability:
            t = template_of(p.prompt, e.subject)
            if t and all(t != x for x, _ in out.setdefault(e.relation, [])):
                out[e.relation].append((t, p.subkind))
    return out


def _more_portability(e: Edit, templates: dict, n: int) -> list[Probe]:
    """Up to ``n`` multi-hop questions through ``e`` of kinds it does not have yet.

    They carry no answer: the teacher answers them with the prompt in context, so the
    transfer set teaches more of what follows from the new fact; the evaluation skips them.
    """
    have = {p.subkind for p in e.portability if p.subkind} | {
        template_of(p.prompt, e.subject) for p in e.portability
    }
    out: list[Probe] = []
    for t, subkind in templates.get(e.relation or "", []):
        if len(out) >= n:
            break
        if t in have or (subkind and subkind in have):
            continue
        have |= {t, subkind} - {None}
        out.append(
            Probe(
                prompt=t.replace("{}", e.subject),
                answers=[],
                kind="portability",
                edit_id=e.id,
                subkind=subkind,
            )
        )
    return out


def generated_probes(edits: list[Edit], config: AgentsConfig) -> dict[str, Edit]:
    """Edits with missing rephrases and locality probes filled by the rules, and more
    multi-hop questions (without answers) for the transfer set."""
    templates = relation_templates(edits)
    hops = portability_templates(edits) if config.generated_portability > 0 else {}
    edited = {(e.subject.lower(), e.relation) for e in edits if e.relation}
    out: dict[str, Edit] = {}
    for i, e in enumerate(edits):
        update: dict = {}
        if not e.rephrases and e.relation:
            own = template_of(e.prompt, e.subject)
            alts = [t for t in templates.get(e.relation, []) if t != own]
            update["rephrases"] = [t.replace("{}", e.subject) for t in alts][
                : config.generated_rephrases
            ]
        if not e.locality:
            loc: list[Probe] = []
            # same subject, a relation it is not edited on: must keep its old answer
            for rel, ts in templates.items():
                if len(loc) >= config.same_subject_locality:
                    break
                if rel != e.relation and (e.subject.lower(), rel) not in edited:
                    prompt = ts[0].replace("{}", e.subject)
                    loc.append(_locality(prompt, e.id, "same_subject"))
            # other subjects: the batch's other edit prompts, taken cyclically from this one on
            others = [
                o for o in edits[i + 1 :] + edits[:i] if o.subject.lower() != e.subject.lower()
            ]
            for o in others[: config.other_subject_locality]:
                loc.append(_locality(o.prompt, e.id, "other_subject"))
            update["locality"] = loc
        more = _more_portability(e, hops, config.generated_portability) if e.relation else []
        if more:
            update["portability"] = [*e.portability, *more]
        out[e.id] = e.model_copy(update=update) if update else e
    return out


def _locality(prompt: str, edit_id: str, subkind: str) -> Probe:
    return Probe(prompt=prompt, answers=[], kind="locality", edit_id=edit_id, subkind=subkind)


def record_expected(probes: list[Probe], ctx: AgentsContext) -> list[Probe]:
    """Set ``expected`` of every locality probe to the pre-edit model's greedy answer.

    Always recomputed: a value carried in the data came from some other model.
    """
    from skedit.sft.modelops import generate

    todo = [p for p in probes if p.kind == "locality"]
    if todo:
        model, tok = ctx.teacher()
        with ctx.lock:
            gens = generate(
                model,
                tok,
                [p.prompt for p in todo],
                max_new_tokens=ctx.config.probe_max_new_tokens,
                batch_size=ctx.config.batch_size,
            )
        for p, g in zip(todo, gens, strict=True):
            p.expected = first_answer(g)
    return probes


def questioner(state: BatchState, runtime: Runtime[AgentsContext]) -> BatchState:
    ctx = runtime.context
    edits = edits_of(state)
    filled = generated_probes(edits, ctx.config)
    lacking = [e for e in filled.values() if not e.rephrases]
    for eid, q in ctx.backend.questions(
        lacking, n_rephrases=ctx.config.generated_rephrases
    ).items():
        e = filled[eid]
        port = list(e.portability) or [
            Probe(prompt=p["prompt"], answers=[p["answer"]], kind="portability", edit_id=eid)
            for p in q.portability
        ]
        filled[eid] = e.model_copy(update={"rephrases": q.rephrases, "portability": port})
    edits = [filled[e.id] for e in edits]
    probes = [p for e in edits for p in e.probes()]
    probes = record_expected(probes, ctx)
    get_stream_writer()({"event": "questioner", "probes": len(probes)})
    return {"edits": [dump(e) for e in edits], "probes": [dump(p) for p in probes]}
