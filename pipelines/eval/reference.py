"""The locality reference: the pre-edit model's outputs on the probes, computed once per (model,
probe set) and cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from skedit.prompts.answers import first_answer
from skedit.prompts.io import atomic_write_json
from skedit.prompts.schema import Probe
from skedit.sft.modelops import generate, score_targets


def reference_key(model_dir: str | os.PathLike, probes: Sequence[Probe]) -> str:
    """A hash of the model's files (name, size, mtime) and of the probe set."""
    h = hashlib.sha256()
    root = Path(model_dir)
    if root.is_dir():
        for f in sorted(root.iterdir()):
            if f.is_file() and f.suffix in {".safetensors", ".bin", ".json", ".pt"}:
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    h.update(str(root.resolve()).encode())
    for p in probes:
        h.update(p.model_dump_json().encode())
    return h.hexdigest()[:16]


def pre_edit_reference(
    model,
    tokenizer,
    probes: Sequence[Probe],
    *,
    max_new_tokens: int = 8,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, dict]:
    """The pre-edit model's outputs on the locality probes: ``{probe_id: {"answer", "target",
    "predicted", "logprob"}}``. ``target`` is the recorded ``expected`` when present (else the
    answer); ``predicted`` are the argmax ids on the teacher-forced ``prompt + " " + target``
    and ``logprob`` that target's log-probability: how sure the model was of the answer an
    edit must keep (a neighbour answered right at probability 0.15 is one any change tips)."""
    loc = [p for p in probes if p.kind == "locality"]
    if not loc:
        return {}
    gens = generate(
        model,
        tokenizer,
        [p.prompt for p in loc],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        desc="pre-edit reference" if progress else None,
    )
    answers = [first_answer(g) for g in gens]
    targets = [p.expected if p.expected else a for p, a in zip(loc, answers, strict=True)]
    keep = [i for i, t in enumerate(targets) if t.strip()]
    scores = score_targets(
        model, tokenizer, [loc[i].prompt for i in keep], [targets[i] for i in keep]
    )
    out = {
        p.id: {"answer": a, "target": t, "predicted": None, "logprob": None}
        for p, a, t in zip(loc, answers, targets, strict=True)
    }
    for i, s in zip(keep, scores, strict=True):
        out[loc[i].id]["predicted"] = list(s.predicted)
        out[loc[i].id]["logprob"] = round(s.logprob, 4)
    return out


def cached_reference(
    model_dir: str | os.PathLike,
    probes: Sequence[Probe],
    cache_dir: str | os.PathLike,
    *,
    model=None,
    tokenizer=None,
    progress: bool = False,
) -> dict[str, dict]:
    """:func:`pre_edit_reference` of the model in ``model_dir``, cached in ``cache_dir``."""
    path = Path(cache_dir) / f"reference-{reference_key(model_dir, probes)}.json"
    if path.exists():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if all("logprob" in r for r in cached.values()):  # else written before it was recorded
            return cached
    if model is None:
        from skedit.sft.modelops import load_model

        model, tokenizer = load_model(model_dir)
    ref = pre_edit_reference(model, tokenizer, probes, progress=progress)
    atomic_write_json(path, ref)
    return ref
