"""Scoring probes: greedy exact match and teacher-forced token accuracy per probe, aggregated
with bootstrap confidence intervals (``evaluate_model``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from skedit.pipelines.eval import metrics as M
from skedit.prompts.schema import Probe
from skedit.sft.modelops import generate, score_targets

METRIC_OF_KIND = {
    "edit": "edit_success",
    "rephrase": "paraphrase",
    "portability": "portability",
    "locality": "locality",
}


METRICS = list(METRIC_OF_KIND.values())


def _prefix_list(
    probes: Sequence[Probe], prefixes: Mapping[str, str] | Sequence[str | None] | None
) -> list[str | None]:
    if prefixes is None:
        return [None] * len(probes)
    if isinstance(prefixes, Mapping):
        return [prefixes.get(p.edit_id or "") for p in probes]
    prefixes = list(prefixes)
    if len(prefixes) != len(probes):
        raise ValueError(f"{len(prefixes)} prefixes for {len(probes)} probes")
    return prefixes


def _target(probe: Probe, reference: Mapping[str, dict] | None) -> str | None:
    if probe.kind == "locality":
        if probe.expected:
            return probe.expected
        ref = (reference or {}).get(probe.id)
        return ref["target"] if ref and ref.get("target") else None
    return probe.answers[0] if probe.answers else None


def score_probes(
    model,
    tokenizer,
    probes: Sequence[Probe],
    *,
    prefixes: Mapping[str, str] | Sequence[str | None] | None = None,
    reference: Mapping[str, dict] | None = None,
    relations: Mapping[str, str | None] | None = None,
    max_new_tokens: int = 8,
    batch_size: int = 64,
    progress: bool = False,
) -> list[dict]:
    """Per-probe rows: the greedy generation, exact match and token-level score.

    Locality probes without a pre-edit answer (no ``expected``, nothing in ``reference``) are
    left out rather than scored against the gold answer.
    """
    pfx = _prefix_list(probes, prefixes)
    items = [(p, c, _target(p, reference)) for p, c in zip(probes, pfx, strict=True)]
    items = [(p, c, t) for p, c, t in items if t and t.strip()]
    if not items:
        return []
    prompts = [p.prompt for p, _, _ in items]
    ctx = [c for _, c, _ in items]
    gens = generate(
        model,
        tokenizer,
        prompts,
        prefixes=ctx,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        desc="generate" if progress else None,
    )
    scores = score_targets(
        model,
        tokenizer,
        prompts,
        [t for _, _, t in items],
        prefixes=ctx,
        batch_size=batch_size,
        desc="score" if progress else None,
    )
    rows = []
    for (p, c, t), g, s in zip(items, gens, scores, strict=True):
        if p.kind == "locality":
            em = M.locality_agreement(g, t)
            ref = (reference or {}).get(p.id) or {}
            pre = ref.get("predicted")
            base_logprob = ref.get("logprob")
            tok = (
                M.token_locality(s.predicted, pre)
                if pre is not None and len(pre) == len(s.predicted)
                else s.token_accuracy  # same as the pre-edit argmax when it generated `t`
            )
        else:
            em = M.exact_match(g, p.answers)
            tok = s.token_accuracy
            base_logprob = None
        rows.append(
            {
                "probe_id": p.id,
                "edit_id": p.edit_id,
                "kind": p.kind,
                "subkind": p.subkind,
                "relation": (relations or {}).get(p.edit_id or ""),
                "prompt": p.prompt,
                "context": bool(c),
                "target": t,
                "generation": g,
                "exact_match": em,
                "token_accuracy": tok,
                # locality: the pre-edit model's probability of the answer it must keep
                "base_prob": None if base_logprob is None else round(math.exp(base_logprob), 4),
            }
        )
    return rows


def aggregate(rows: Sequence[dict], *, seed: int = 0) -> dict:
    """``{metric: {"mean","n","ci","token_accuracy": {"mean","n","ci"}}}`` from probe rows."""
    out = {}
    for kind, metric in METRIC_OF_KIND.items():
        sel = [r for r in rows if r["kind"] == kind]
        groups = [r["edit_id"] or r["probe_id"] for r in sel]
        entry = M.summarise([r["exact_match"] for r in sel], groups=groups, seed=seed)
        entry["token_accuracy"] = M.summarise(
            [r["token_accuracy"] for r in sel], groups=groups, seed=seed
        )
        out[metric] = entry
    return out


def evaluate_model(
    model,
    tokenizer,
    probes: Sequence[Probe],
    *,
    prefixes: Mapping[str, str] | Sequence[str | None] | None = None,
    reference: Mapping[str, dict] | None = None,
    relations: Mapping[str, str | None] | None = None,
    max_new_tokens: int = 8,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Edit success, paraphrase, portability and locality of ``model`` on ``probes``.

    ``prefixes``: a context per probe (a list aligned with ``probes``) or per edit id (a dict),
    already laid out by ``render.context_prefix`` — the PROMPT baseline. ``reference``: the
    pre-edit model's outputs from :func:`pre_edit_reference` (token-level locality compares
    argmaxes against it). ``relations``: edit id → relation, adds ``by_relation``.
    Returns the four metrics plus ``rows`` (one per probe) and ``by_relation``.
    """
    rows = score_probes(
        model,
        tokenizer,
        probes,
        prefixes=prefixes,
        reference=reference,
        relations=relations,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    out = aggregate(rows, seed=seed)
    by_relation = {}
    if relations:
        for rel in sorted({r["relation"] for r in rows if r["relation"]}):
            by_relation[rel] = aggregate([r for r in rows if r["relation"] == rel], seed=seed)
    out["by_relation"] = by_relation
    out["rows"] = rows
    return out
