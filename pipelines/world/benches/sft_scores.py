"""How the TRL-stage benchmark (``benches.sft``) scores a model: the eval team's metrics per
probe kind, the transfer set's answers, and one variant's row of the report."""

from __future__ import annotations

import resource
from collections.abc import Sequence
from typing import Any

from skedit.prompts.answers import first_answer, matches, normalise
from skedit.prompts.schema import Probe
from skedit.sft.modelops import generate

METRICS = {
    "edit": "edit_success",
    "rephrase": "paraphrase",
    "portability": "portability",
    "locality": "locality",
}


def split_probes(probes: Sequence[Probe]) -> tuple[list[Probe], list[Probe]]:
    """(trained, held out): the last rephrase and the last locality probe of an edit that has
    more than one are held out of the transfer set."""
    held: set[str] = set()
    for kind in ("rephrase", "locality"):
        by_edit: dict[str, list[Probe]] = {}
        for p in probes:
            if p.kind == kind:
                by_edit.setdefault(p.edit_id or "", []).append(p)
        held |= {ps[-1].id for ps in by_edit.values() if len(ps) > 1}
    return [p for p in probes if p.id not in held], [p for p in probes if p.id in held]


def record_locality(model, tok, probes: list[Probe]) -> None:
    """The pre-edit model's greedy answers are the locality reference (contracts.md)."""
    loc = [p for p in probes if p.kind == "locality"]
    gens = generate(model, tok, [p.prompt for p in loc], desc="base answers")
    for p, g in zip(loc, gens, strict=True):
        p.expected = first_answer(g).strip()


def score(model, tok, probes: Sequence[Probe], prefixes=None) -> dict[str, dict[str, Any]]:
    """The eval team's metrics (``evaluate_model``): greedy exact match with its CI, and the
    teacher-forced token accuracy; locality against the recorded pre-edit answer."""
    from skedit.pipelines.eval.scoring import evaluate_model

    res = evaluate_model(
        model,
        tok,
        list(probes),
        prefixes=list(prefixes) if prefixes is not None else None,
        batch_size=128,
    )
    out = {}
    for key in METRICS.values():
        m = res.get(key) or {}
        if m.get("n"):
            out[key] = {
                "mean": round(m["mean"], 4),
                "n": m["n"],
                "ci": m.get("ci"),
                "token_accuracy": round(m["token_accuracy"]["mean"], 4),
            }
    return out


def fidelity(model, tok, rows) -> dict[str, float]:
    """How often the student now gives the transfer set's answer (teacher's or anchor's)."""
    gens = generate(model, tok, [r.prompt for r in rows], batch_size=128)
    hits: dict[str, list[bool]] = {}
    for r, g in zip(rows, gens, strict=True):
        want = normalise(r.completion)
        ok = matches(g, [want]) if want else not normalise(first_answer(g))
        hits.setdefault("anchors" if r.kind == "locality" else "taught", []).append(ok)
    return {k: round(sum(v) / len(v), 4) for k, v in hits.items()}


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measured(model, tok, rows, train_probes, held, teacher, teacher_s: float, train_s: float):
    """A trained model's row of the report: its scores on the trained and held-out probes, how
    often it gives the transfer set's answers, its portability against the teacher's, and the
    teacher's and training's seconds."""
    trained, held_out = score(model, tok, train_probes), score(model, tok, held)
    port = trained.get("portability", {}).get("mean", 0.0)
    tport = teacher.get("portability", {}).get("mean", 0.0)
    return {
        "trained": trained,
        "held_out": held_out,
        "matches_transfer_set": fidelity(model, tok, rows),
        "portability_ratio": round(port / tport, 4) if tport else None,
        "teacher_seconds": round(teacher_s, 1),
        "train_seconds": round(train_s, 1),
        "total_seconds": round(teacher_s + train_s, 1),
        "peak_rss_mb": peak_mb(),
    }
