"""Counterfactual edits of facts a real model knows (ROME's "known facts" layout).

A known-facts file is a JSON list of records ``{known_id, subject, attribute, template, prompt,
relation_id}`` (facts that GPT-2 XL completed correctly, published with ROME). A model knows
only some of them: :func:`known_mask` asks it (greedy completion starts with ``attribute``).
:func:`counterfactuals` turns the known ones into CounterFact records, the layout
``skedit data`` reads:

- ``requested_rewrite``: the record's prompt with ``{}`` for the subject, ``target_true`` the
  attribute, ``target_new`` another attribute of the same relation (seeded; one that another
  known subject really has, when there is one);
- ``paraphrase_prompts``: the subject in the relation's other prompt forms;
- ``neighborhood_prompts``: other known subjects with the same relation and the same true
  attribute (they must keep it);
- ``attribute_prompts``: known subjects whose true attribute is the new object.

The editor sees only the rewrites (:func:`rewrites_only`); the rest is held out for
``skedit eval --probes``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from skedit.prompts.errors import SkeditError

FIELDS = {"known_id": int, "subject": str, "attribute": str, "template": str, "prompt": str}
FIELDS_OPTIONAL = {"relation_id": str, "prediction": str}


def read_known_facts(path: str | Path) -> list[dict]:
    """The records of a known-facts file, checked field by field."""
    path = Path(path)
    if not path.is_file():
        raise SkeditError("known-facts file not found", file=str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SkeditError(f"not JSON: {exc}", file=str(path)) from exc
    if not isinstance(data, list):
        raise SkeditError("expected a JSON list of known-fact records", file=str(path))
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise SkeditError("expected an object", file=str(path), record=i)
        for key, typ in {**FIELDS, **FIELDS_OPTIONAL}.items():
            if key not in rec and key in FIELDS_OPTIONAL:
                continue
            if not isinstance(rec.get(key), typ) or (typ is str and not rec[key].strip()):
                raise SkeditError(
                    f"expected a non-empty {typ.__name__}",
                    file=str(path),
                    record=i,
                    field=key,
                    hint="known-facts records need " + ", ".join(FIELDS),
                )
        if rec["subject"] not in rec["prompt"]:
            raise SkeditError("the prompt does not name the subject", file=str(path), record=i)
        rec.setdefault("relation_id", "")
    return data


def known_mask(model, tokenizer, records: Sequence[dict], *, batch_size: int = 32) -> list[bool]:
    """Which records the model knows: its greedy completion of ``prompt`` gives ``attribute``."""
    from skedit.prompts.answers import matches
    from skedit.sft.modelops import generate

    gens = generate(
        model,
        tokenizer,
        [r["prompt"] for r in records],
        max_new_tokens=8,
        batch_size=batch_size,
        desc="which facts the model knows",
    )
    return [matches(g, [r["attribute"]]) for g, r in zip(gens, records, strict=True)]


def _rng(seed: int, key: object) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _forms(records: Sequence[dict]) -> dict[str, list[str]]:
    """Per relation, its distinct prompt forms (``{}`` for the subject), in record order."""
    out: dict[str, list[str]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r["known_id"]):
        for form in (r["template"], r["prompt"].replace(r["subject"], "{}", 1)):
            if form not in out[r["relation_id"]]:
                out[r["relation_id"]].append(form)
    return out


def counterfactuals(
    known: Sequence[dict], all_records: Sequence[dict], *, seed: int = 0
) -> list[dict]:
    """One CounterFact record per known fact whose relation has another attribute."""
    forms = _forms(all_records)
    attributes: dict[str, list[str]] = defaultdict(list)
    for r in sorted(all_records, key=lambda r: r["known_id"]):
        if r["attribute"] not in attributes[r["relation_id"]]:
            attributes[r["relation_id"]].append(r["attribute"])
    by_relation: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(known, key=lambda r: r["known_id"]):
        by_relation[r["relation_id"]].append(r)
    out = []
    for r in sorted(known, key=lambda r: r["known_id"]):
        rel, true = r["relation_id"], r["attribute"]
        others = by_relation[rel]
        pool = sorted({k["attribute"] for k in others if k["attribute"].lower() != true.lower()})
        pool = pool or [a for a in attributes[rel] if a.lower() != true.lower()]
        if not pool:
            continue
        new = _rng(seed, r["known_id"]).choice(pool)
        own = r["prompt"].replace(r["subject"], "{}", 1)
        paraphrases = [f.replace("{}", r["subject"]) for f in forms[rel] if f != own]
        out.append(
            {
                "case_id": r["known_id"],
                "requested_rewrite": {
                    "prompt": own,
                    "subject": r["subject"],
                    "relation_id": rel,
                    "target_new": {"str": new},
                    "target_true": {"str": true},
                },
                "paraphrase_prompts": list(dict.fromkeys(p for p in paraphrases if p != own)),
                "neighborhood_prompts": [
                    k["prompt"] for k in others if k["attribute"] == true and k is not r
                ],
                "attribute_prompts": [
                    k["prompt"] for k in others if k["attribute"] == new and k is not r
                ],
            }
        )
    return out


def rewrites_only(records: Sequence[dict]) -> list[dict]:
    """The same records with every held-out prompt removed: what the editor may see."""
    return [
        {**r, "paraphrase_prompts": [], "neighborhood_prompts": [], "attribute_prompts": []}
        for r in records
    ]


def select_batch(records: Sequence[dict], n: int) -> list[dict]:
    """``n`` of the counterfactual ``records`` chosen so that as many neighbourhood prompts as
    possible name a subject the batch does *not* edit (a neighbour that the batch edits is
    meant to change, so it cannot measure locality). Deterministic: starting from all records,
    drop the one whose removal leaves the most such prompts, until ``n`` are left (ties: the
    highest ``case_id`` goes). Only the held-out prompts' *subjects* are used, nothing that
    reaches the editor."""
    by_prompt = {}
    for r in records:
        subject = r["requested_rewrite"]["subject"]
        by_prompt[r["requested_rewrite"]["prompt"].replace("{}", subject)] = subject
    batch = sorted(records, key=lambda r: r["case_id"])

    def score(chosen: list[dict]) -> int:
        edited = {r["requested_rewrite"]["subject"] for r in chosen}
        return sum(
            by_prompt.get(p) not in edited for r in chosen for p in r["neighborhood_prompts"]
        )

    while len(batch) > max(n, 0):
        best = max(
            range(len(batch)),
            key=lambda i: (score(batch[:i] + batch[i + 1 :]), batch[i]["case_id"]),
        )
        batch.pop(best)
    return batch
