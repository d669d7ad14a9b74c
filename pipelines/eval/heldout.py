"""Held-out probes from any edits file: ``skedit eval DIR --probes FILE``.

A real model does not answer every phrasing of a fact it knows. A paraphrase it got wrong
before the edit says nothing about the edit, and neither does a neighbourhood prompt it never
answered right. So a rephrase counts only where the base model gave the edit's old answer
(``target_old``), and a locality probe with a gold answer only where the base model gave that
answer; the rest are dropped and counted. A locality probe that names a subject the run edits
is dropped too (``names_edited_subject``): a neighbour of one edit may be another edit of the
same batch, whose answer is meant to change. Locality is then scored, as always, against the base
model's own recorded answer; where the probe has a gold answer that answer is the part of the
base model's continuation the gold names ("Paris" of "Paris in 1889."), so an edited model that
says "Paris in 2012." has kept the neighbour's fact: the rest of a free-text continuation is not
the fact, and the same rule decided which probes count.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from skedit.prompts.answers import first_answer, matched_alias, matches, normalise
from skedit.prompts.schema import Edit, Probe


@dataclass
class HeldOut:
    """The probes to score, and what was left out and why."""

    probes: list[Probe]
    source: str
    n_edits_matched: int = 0
    n_edits_unmatched: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    names_edited_subject: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "file": self.source,
            "edits_matched": self.n_edits_matched,
            "edits_not_in_run": self.n_edits_unmatched,
            "kept": self.kept,
            "dropped_base_wrong": self.dropped,
            "dropped_names_edited_subject": self.names_edited_subject,
            "rule": "a rephrase counts only where the base model answered it with target_old, "
            "a locality probe with a gold answer only where the base model gave that answer, "
            "and no locality probe that names a subject the run edits",
        }


def _match(run_edits: Sequence[Edit], file_edits: Sequence[Edit]) -> list[tuple[Edit, Edit]]:
    """(run edit, file edit) pairs: by id, else by subject and prompt."""
    by_id = {e.id: e for e in run_edits}
    by_text = {(normalise(e.subject), normalise(e.prompt)): e for e in run_edits}
    pairs = []
    for f in file_edits:
        run = by_id.get(f.id) or by_text.get((normalise(f.subject), normalise(f.prompt)))
        if run is not None:
            pairs.append((run, f))
    return pairs


def _candidates(run: Edit, f: Edit) -> list[tuple[Probe, list[str] | None]]:
    """Every probe of ``f`` re-addressed to ``run``, with the answer the base must give."""
    out: list[tuple[Probe, list[str] | None]] = [
        (Probe(prompt=run.prompt, answers=[run.target_new], kind="edit", edit_id=run.id), None)
    ]
    old = [f.target_old] if f.target_old else None
    for r in f.rephrases:
        probe = Probe(prompt=r, answers=[run.target_new], kind="rephrase", edit_id=run.id)
        out.append((probe, old))
    for p in f.portability:
        out.append((p.model_copy(update={"edit_id": run.id, "id": ""}), None))
    for p in f.locality:
        probe = Probe(prompt=p.prompt, kind="locality", edit_id=run.id, subkind=p.subkind)
        out.append((probe, list(p.answers) or None))
    return out


def _subject_pattern(edits: Sequence[Edit]) -> re.Pattern | None:
    """Matches any edited subject as a whole word (case-insensitive)."""
    subjects = sorted({e.subject for e in edits if e.subject.strip()}, key=len, reverse=True)
    if not subjects:
        return None
    alts = "|".join(re.escape(s) for s in subjects)
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", flags=re.IGNORECASE)


def heldout_probes(
    model,
    tokenizer,
    run_edits: Sequence[Edit],
    path: str | os.PathLike,
    *,
    format: str = "auto",
    batch_size: int = 32,
    progress: bool = True,
) -> HeldOut:
    """The probes of the edits file ``path`` that match the run's edits, filtered by what the
    base model (``model``) answered before the edit."""
    from skedit.pipelines.data.datasets import load_edits
    from skedit.sft.modelops import generate

    loaded = load_edits(path, format=format)
    pairs = _match(run_edits, loaded.edits)
    items = [c for run, f in pairs for c in _candidates(run, f)]
    check = [i for i, (_, want) in enumerate(items) if want]
    gens = generate(
        model,
        tokenizer,
        [items[i][0].prompt for i in check],
        max_new_tokens=8,
        batch_size=batch_size,
        desc="base answers to held-out probes" if progress else None,
    )
    answered = dict(zip(check, gens, strict=True))
    out = HeldOut(
        probes=[],
        source=str(path),
        n_edits_matched=len(pairs),
        n_edits_unmatched=len(loaded.edits) - len(pairs),
    )
    seen: set[tuple[str, str, str]] = set()
    edited = _subject_pattern(run_edits)
    for i, (probe, want) in enumerate(items):
        key = (probe.kind, probe.edit_id or "", probe.prompt)
        if key in seen:
            continue
        seen.add(key)
        label = probe.subkind if probe.kind == "locality" and probe.subkind else probe.kind
        if probe.kind == "locality" and edited is not None and edited.search(probe.prompt):
            out.names_edited_subject[label] = out.names_edited_subject.get(label, 0) + 1
            continue
        if want and not matches(answered[i], want):
            out.dropped[label] = out.dropped.get(label, 0) + 1
            continue
        if probe.kind == "locality" and i in answered:
            probe.expected = matched_alias(answered[i], want or []) or first_answer(answered[i])
        out.kept[label] = out.kept.get(label, 0) + 1
        out.probes.append(probe)
    return out
