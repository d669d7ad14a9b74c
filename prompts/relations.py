"""Ways to ask a Wikidata relation, for rephrases of real facts the batch gives only once.

Written from general knowledge of each relation (not copied from any evaluation set) and used
by the questioner (``agents.nodes.questioner``) for edits whose ``relation`` is a Wikidata id.
``{}`` stands for the subject.

    templates_for(relation_id, rewrite_prompt, subject) -> list[str] of prompts (subject filled)

Two styles per relation: cloze ("The capital of {} is") and question ("Q: What is the capital
of {}? A:").  Unknown relations fall back to generic wrappers built from the rewrite prompt
itself (prefix contexts and a question wrapper).  Callers must still drop any generated prompt
whose normalised text equals a held-out probe when they measure generalisation.

``GENERAL`` holds general-knowledge questions with no relation to any edit: the questioner adds
them as locality probes (``agents.general_locality``), so training keeps the base model's own
answers to them.
"""

from __future__ import annotations

import json
import re
from importlib import resources


def _tables() -> dict:
    """The hand-written tables (``relations.json``, package data beside this module)."""
    return json.loads(
        resources.files("skedit.prompts").joinpath("relations.json").read_text("utf-8")
    )


_T = _tables()
CLOZE: dict[str, list[str]] = _T["cloze"]  # per relation id: cloze prompts ("{} is in")
QUESTION: dict[str, list[str]] = _T["question"]  # per relation id: "Q: ...? A:" prompts
# neutral contexts put before a prompt (generic wrappers; no knowledge of any relation)
PREFIXES: list[str] = _T["prefixes"]
# a list-continuation prompt ("{}" the subject, last): the base model names what it holds close
# to a subject (``agents.associate_locality``)
ASSOCIATES: str = _T["associates"]
# general-knowledge cloze prompts (none names a subject of the real-facts data)
GENERAL: list[str] = _T["general"]
# well-known subjects per relation: the questioner asks an edit's relation about them as
# locality anchors, so an edit does not move the answers of subjects that share its old object
# (``agents.relation_locality``)
WELL_KNOWN: dict[str, list[str]] = _T["well_known"]


_PROPERTY_ID = re.compile(r"P\d+")


def is_property_id(relation: str | None) -> bool:
    """Whether ``relation`` is a Wikidata property id (``P17``): a key, not a word to write."""
    return bool(relation) and _PROPERTY_ID.fullmatch(relation.strip()) is not None


def generic(rewrite_prompt: str) -> list[str]:
    """Wrappers built from the rewrite prompt itself (any relation)."""
    p = rewrite_prompt.strip()
    return [pre + p for pre in PREFIXES[:4]] + [f"Q: Complete the sentence: {p}? A:"]


def templates(relation_id: str) -> list[str]:
    """Cloze + question templates for a relation (empty if unknown)."""
    return CLOZE.get(relation_id, []) + QUESTION.get(relation_id, [])


def templates_for(
    relation_id: str,
    rewrite_prompt: str,
    subject: str,
    *,
    n: int | None = None,
    generic_wrappers: bool = True,
    prefixed: int = 0,
) -> list[str]:
    """Generated prompts for one (subject, relation), de-duplicated, the rewrite itself excluded.

    ``n``: keep the first n relation templates (cloze first, then questions interleaved);
    ``generic_wrappers``: add the rewrite-prompt wrappers (always used for unknown relations);
    ``prefixed``: add this many relation templates again behind a neutral prefix.
    """
    cl, qu = CLOZE.get(relation_id, []), QUESTION.get(relation_id, [])
    order: list[str] = []
    # interleave: 2 cloze, 1 question, ...
    ci = qi = 0
    while ci < len(cl) or qi < len(qu):
        for _ in range(2):
            if ci < len(cl):
                order.append(cl[ci])
                ci += 1
        if qi < len(qu):
            order.append(qu[qi])
            qi += 1
    if n is not None:
        order = order[:n]
    out = [t.replace("{}", subject) for t in order]
    if prefixed:
        out += [
            PREFIXES[(i + 4) % len(PREFIXES)] + t.replace("{}", subject)
            for i, t in enumerate([c for c in order if not c.startswith("Q")][:prefixed])
        ]
    if generic_wrappers or not order:
        out += generic(rewrite_prompt)
    seen, res = {rewrite_prompt.strip().lower()}, []
    for p in out:
        k = p.strip().lower()
        if k not in seen:
            seen.add(k)
            res.append(p)
    return res
