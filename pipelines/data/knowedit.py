"""KnowEdit (EasyEdit) records and the original ZsRE eval records (MEND/ROME) as edits.

KnowEdit, ZsRE / WikiData_recent / WikiData_counterfact subsets::

    {"subject", "prompt", "target_new", "ground_truth"?, "rephrase_prompt"?,
     "portability": {"Reasoning" | "Logical_Generalization" | "Subject_Aliasing": [{"prompt", "ground_truth"}]},
     "locality": {"Relation_Specificity" | "Forgetfulness": [{"prompt", "ground_truth"}]}}

KnowEdit WikiBio: ``{"text", "labels", "concept", "locality"}``. An edit there makes the model
continue a biography passage with the right sentence, so subject = ``concept``, prompt =
``text`` (the passage, which names the concept), target_new = ``labels`` (the continuation).

The category names (``Reasoning``, ``Relation_Specificity``, ...) become ``Probe.subkind``.
``ground_truth`` may be a string, a list of aliases or a list of alias lists: see
:func:`skedit.pipelines.data.fields.answers`. The edit's own ``ground_truth`` (first alias)
becomes ``target_old`` and makes the edit a ``modify``; without one it is an ``insert``.

Original ZsRE eval: ``{"subject", "src", "alt", "answers", "rephrase", "loc", "loc_ans"}``;
``loc`` is an NQ question ("nq question: who played ..."), whose prefix is dropped.
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
from skedit.prompts.schema import Edit, Probe, ProbeKind

# fields each format reads; the others are reported by `skedit data inspect` as unused
KNOWEDIT_FIELDS = {
    "subject",
    "prompt",
    "target_new",
    "ground_truth",
    "rephrase_prompt",
    "rephrase",
    "portability",
    "locality",
    "text",
    "labels",
    "concept",
    "locality_prompt",  # EasyEdit's flat request style
    "locality_ground_truth",
    "portability_prompt",
    "portability_ground_truth",
}
KNOWEDIT_KNOWN_UNUSED = {"cond"}
ZSRE_FIELDS = {"subject", "src", "alt", "answers", "rephrase", "loc", "loc_ans"}
ZSRE_KNOWN_UNUSED = {"pred", "cond"}
NQ_PREFIX = "nq question:"


def _probe_items(value: Any, field: str) -> list[tuple[str, dict]]:
    """``{category: [{"prompt", "ground_truth"}, ...]}`` as (category, item) pairs."""
    if value is None:
        return []
    cats = obj(value, field, "an object of categories, e.g. {'Reasoning': [...]}")
    out = []
    for cat, items in cats.items():
        cat_field = join(field, cat)
        if isinstance(items, dict):  # one item without its list
            items = [items]
        if not isinstance(items, list):
            raise RecordError(
                cat_field, f"expected a list of {{prompt, ground_truth}} items, got {items!r:.40}"
            )
        for i, item in enumerate(items):
            out.append((cat, obj(item, join(cat_field, i), "an object {prompt, ground_truth}")))
    return out


def _probes(
    value: Any, field: str, kind: ProbeKind, edit_id: str, need_answer: bool
) -> list[Probe]:
    probes = []
    counters: dict[str, int] = {}
    for cat, item in _probe_items(value, field):
        i = counters[cat] = counters.get(cat, -1) + 1
        item_field = join(join(field, cat), i)
        gold = answers(item.get("ground_truth"), join(item_field, "ground_truth"))
        if need_answer and not gold:
            raise RecordError(
                join(item_field, "ground_truth"), "missing or empty; expected the answer"
            )
        for prompt in str_list(item, "prompt", item_field) or [req_str(item, "prompt", item_field)]:
            probes.append(
                Probe(prompt=prompt.strip(), answers=gold, kind=kind, subkind=cat, edit_id=edit_id)
            )
    return probes


def _flat_probes(rec: dict, prefix: str, kind: ProbeKind, edit_id: str) -> list[Probe]:
    """EasyEdit's flat request style: ``locality_prompt`` + ``locality_ground_truth``."""
    prompts = str_list(rec, f"{prefix}_prompt")
    gold = answers(rec.get(f"{prefix}_ground_truth"), f"{prefix}_ground_truth")
    return [
        Probe(prompt=p.strip(), answers=gold, kind=kind, subkind=prefix, edit_id=edit_id)
        for p in prompts
    ]


def knowedit_edits(rec: Any, source: str) -> list[Edit]:
    rec = obj(rec, "", "an object (one KnowEdit record)")
    if "prompt" not in rec and {"text", "labels", "concept"} <= rec.keys():
        edit = Edit(
            subject=req_str(rec, "concept"),
            prompt=req_str(rec, "text"),
            target_new=req_str(rec, "labels"),
            kind="insert",
            source=source,
        )
    else:
        target_old = answers(rec.get("ground_truth"), "ground_truth")
        if "target_new" in rec and isinstance(rec["target_new"], list):
            raise RecordError("target_new", "expected a string, got a list")
        edit = Edit(
            subject=req_str(rec, "subject"),
            prompt=req_str(rec, "prompt", what="a string (the edit's question or cloze)"),
            target_new=req_str(rec, "target_new"),
            target_old=target_old[0] if target_old else None,
            kind="modify" if target_old else "insert",
            rephrases=[
                r.strip()
                for r in str_list(rec, "rephrase_prompt") + str_list(rec, "rephrase")
                if r.strip()
            ],
            source=source,
        )
    edit.portability += _probes(rec.get("portability"), "portability", "portability", edit.id, True)
    edit.portability += _flat_probes(rec, "portability", "portability", edit.id)
    edit.locality += _probes(rec.get("locality"), "locality", "locality", edit.id, False)
    edit.locality += _flat_probes(rec, "locality", "locality", edit.id)
    return [edit]


def zsre_edits(rec: Any, source: str) -> list[Edit]:
    rec = obj(rec, "", "an object (one ZsRE record)")
    old = answers(rec.get("answers"), "answers")
    edit = Edit(
        subject=req_str(rec, "subject"),
        prompt=req_str(rec, "src", what="a string (the question)"),
        target_new=req_str(rec, "alt", what="a string (the new answer)"),
        target_old=old[0] if old else None,
        kind="modify" if old else "insert",
        rephrases=[r.strip() for r in str_list(rec, "rephrase") if r.strip()],
        source=source,
    )
    loc = opt_str(rec, "loc")
    if loc:
        if loc.lower().startswith(NQ_PREFIX):
            loc = loc[len(NQ_PREFIX) :]
        gold = answers(req(rec, "loc_ans", what="the answer to the loc question"), "loc_ans")
        edit.locality.append(
            Probe(prompt=loc.strip(), answers=gold, kind="locality", subkind="nq", edit_id=edit.id)
        )
    return [edit]
