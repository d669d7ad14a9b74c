"""ROME CounterFact and MQuAKE records as edits.

CounterFact: ``{"case_id", "requested_rewrite": {"prompt" (with "{}" for the subject),
"subject", "relation_id", "target_new": {"str"}, "target_true": {"str"}}, "paraphrase_prompts",
"neighborhood_prompts", "attribute_prompts", "generation_prompts"}``.
Paraphrases become rephrases; neighborhood prompts (other subjects with the same relation and
the *true* object) are locality probes answered by ``target_true``; attribute prompts (other
subjects that really have the *new* object) are locality probes answered by ``target_new``.
Generation prompts have no answer: they are not probes (inspect lists them as unused).

MQuAKE: ``{"case_id", "requested_rewrite": [rewrite, ...] (CounterFact-style, each with a
"question"), "questions", "answer", "answer_alias", "new_answer", "new_answer_alias",
"single_hops", "new_single_hops"}``. Each rewrite is one edit (its ``question`` is a rephrase).
The multi-hop ``questions`` need all of the case's edits; they become portability probes
(subkind ``multi_hop``, answers ``new_answer`` + aliases) of the case's first edit, so each
question is counted once. Hops of ``new_single_hops`` that are not themselves edited are
facts the edits must leave alone: they become locality probes (subkind ``single_hop``).
The pre-edit chain (``answer``, ``single_hops``) is not used.
"""

from __future__ import annotations

from typing import Any

from skedit.pipelines.data.fields import (
    RecordError,
    answers,
    join,
    obj,
    opt_str,
    req,
    req_str,
    str_list,
)
from skedit.prompts.schema import Edit, Probe

COUNTERFACT_FIELDS = {
    "case_id",
    "requested_rewrite",
    "paraphrase_prompts",
    "neighborhood_prompts",
    "attribute_prompts",
}
COUNTERFACT_KNOWN_UNUSED = {"generation_prompts", "pararel_idx"}
MQUAKE_FIELDS = {
    "case_id",
    "requested_rewrite",
    "questions",
    "new_answer",
    "new_answer_alias",
    "new_single_hops",
}
MQUAKE_KNOWN_UNUSED = {"answer", "answer_alias", "single_hops", "orig"}


def _case_id(rec: dict) -> str | None:
    cid = rec.get("case_id")
    if cid is None:
        return None
    if isinstance(cid, bool) or not isinstance(cid, int | str):
        raise RecordError("case_id", f"expected a number or a string, got {cid!r:.40}")
    return str(cid)


def _target(rw: dict, key: str, path: str, required: bool) -> str | None:
    if key not in rw and not required:
        return None
    value = req(rw, key, path, 'an object {"str": ...}')
    if isinstance(value, str):  # tolerated: a bare string instead of {"str": ...}
        return value
    t = obj(value, join(path, key), 'an object {"str": ...}')
    return req_str(t, "str", join(path, key))


def rewrite_edit(rw: Any, path: str, *, edit_id: str | None, source: str) -> tuple[Edit, str]:
    """One CounterFact-style requested rewrite → (edit, relation id or '')."""
    rw = obj(rw, path, "an object {prompt, subject, target_new, ...}")
    template = req_str(rw, "prompt", path, "a string with '{}' where the subject goes")
    subject = req_str(rw, "subject", path)
    if "{}" not in template:
        raise RecordError(
            join(path, "prompt"), f"expected '{{}}' where the subject goes, got {template!r}"
        )
    target_old = _target(rw, "target_true", path, required=False)
    relation = opt_str(rw, "relation_id", path) or ""
    edit = Edit(
        id=edit_id or "",
        subject=subject,
        prompt=template.replace("{}", subject),
        target_new=_target(rw, "target_new", path, required=True) or "",
        target_old=target_old,
        kind="modify" if target_old else "insert",
        relation=relation or None,  # a Wikidata id: the questioner asks it in written forms
        source=source,
    )
    return edit, relation


def counterfact_edits(rec: Any, source: str) -> list[tuple[Edit, str]]:
    rec = obj(rec, "", "an object (one CounterFact record)")
    cid = _case_id(rec)
    edit, rel = rewrite_edit(
        req(rec, "requested_rewrite", what="an object {prompt, subject, target_new, ...}"),
        "requested_rewrite",
        edit_id=f"cf-{cid}" if cid is not None else None,
        source=source,
    )
    edit.rephrases = [p.strip() for p in str_list(rec, "paraphrase_prompts") if p.strip()]
    for key, subkind, gold in (
        ("neighborhood_prompts", "neighborhood", edit.target_old),
        ("attribute_prompts", "attribute", edit.target_new),
    ):
        for p in _prompts(rec, key):
            edit.locality.append(
                Probe(
                    prompt=p,
                    answers=[gold] if gold else [],
                    kind="locality",
                    subkind=subkind,
                    edit_id=edit.id,
                )
            )
    return [(edit, rel)]


def _prompts(rec: dict, key: str) -> list[str]:
    """Prompt lists; some CounterFact variants store ``{"prompt": ...}`` objects instead."""
    value = rec.get(key)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [req_str(v, "prompt", join(key, i)).strip() for i, v in enumerate(value)]
    return [p.strip() for p in str_list(rec, key) if p.strip()]


def mquake_edits(rec: Any, source: str) -> list[tuple[Edit, str]]:
    rec = obj(rec, "", "an object (one MQuAKE case)")
    cid = _case_id(rec)
    rewrites = req(rec, "requested_rewrite", what="a list of rewrites")
    if not isinstance(rewrites, list) or not rewrites:
        raise RecordError("requested_rewrite", "expected a non-empty list of rewrites")
    out: list[tuple[Edit, str]] = []
    asked: set[str] = set()
    for j, rw in enumerate(rewrites):
        path = join("requested_rewrite", j)
        edit, rel = rewrite_edit(
            rw, path, edit_id=f"mq-{cid}-{j}" if cid is not None else None, source=source
        )
        question = opt_str(rw, "question", path)
        if question and question.strip() and question.strip() != edit.prompt:
            edit.rephrases.append(question.strip())
            asked.add(question.strip())
        asked.add(edit.prompt)
        out.append((edit, rel))
    first = out[0][0]
    gold = answers(req(rec, "new_answer", what="the multi-hop answer"), "new_answer") + answers(
        rec.get("new_answer_alias"), "new_answer_alias"
    )
    gold = list(dict.fromkeys(gold))
    if not gold:
        raise RecordError("new_answer", "empty; expected the multi-hop answer after the edits")
    for q in str_list(rec, "questions"):
        if q.strip():
            first.portability.append(
                Probe(
                    prompt=q.strip(),
                    answers=gold,
                    kind="portability",
                    subkind="multi_hop",
                    edit_id=first.id,
                )
            )
    hops = rec.get("new_single_hops") or []
    if not isinstance(hops, list):
        raise RecordError("new_single_hops", "expected a list of {question, cloze, answer}")
    for i, hop in enumerate(hops):
        hop = obj(hop, join("new_single_hops", i), "an object {question, cloze, answer}")
        path = join("new_single_hops", i)
        question = (opt_str(hop, "question", path) or "").strip()
        cloze = (opt_str(hop, "cloze", path) or "").strip()
        if question in asked or cloze in asked or not (question or cloze):
            continue  # an edited hop: the edit itself
        hop_gold = answers(
            req(hop, "answer", path, "the hop's answer"), join(path, "answer")
        ) + answers(hop.get("answer_alias"), join(path, "answer_alias"))
        first.locality.append(
            Probe(
                prompt=cloze or question,
                answers=list(dict.fromkeys(hop_gold)),
                kind="locality",
                subkind="single_hop",
                edit_id=first.id,
            )
        )
    return out
