"""The transfer set: what the teacher answers with the dense prompt in its context.

Every probe of an approved prompt's edits (edit, rephrase, portability) is answered by the
teacher reading that prompt; locality probes get the *base* model's own no-context answer (an
in-context teacher leaks the prompt's facts into unrelated answers). Portability probes are in
the set on purpose: multi-hop answers do not transfer without them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from skedit.prompts import APPROVED
from skedit.prompts import runfiles as F
from skedit.prompts.answers import first_answer, matches
from skedit.prompts.io import read_jsonl, write_jsonl
from skedit.prompts.render import completion_text, context_prefix
from skedit.prompts.schema import DensePrompt, Probe, TransferExample
from skedit.sft.config import TrainConfig
from skedit.sft.modelops import encode_input, encode_target

TRANSFER_FILE = F.TRANSFER
TRANSFER_KINDS = ("edit", "rephrase", "portability")
KNOWN_FLOOR = -1e4  # log-prob of every other token in a known answer's stored top-k (e^-1e4 = 0)


def approved(prompts: Sequence[DensePrompt]) -> list[DensePrompt]:
    return [p for p in prompts if p.status in APPROVED]


def teacher_prefix(example: TransferExample) -> str:
    """The context the teacher read before the example's input ("" for base-model anchors)."""
    tp, p = example.teacher_prompt, example.prompt
    return tp[: len(tp) - len(p)] if tp.endswith(p) and len(tp) > len(p) else ""


def _transfer_probes(
    prompts: Sequence[DensePrompt], probes: Sequence[Probe]
) -> tuple[list[tuple[Probe, str]], list[Probe], dict[str, int]]:
    """The approved prompts' probes, once each: ``(taught (probe, context prefix), anchors,
    uses)``, ``uses`` counting for each anchor prompt the approved edits that ask it."""
    by_edit: dict[str, list[Probe]] = {}
    for pr in probes:
        by_edit.setdefault(pr.edit_id or "", []).append(pr)
    taught: list[tuple[Probe, str]] = []
    anchors: list[Probe] = []
    uses: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for dp in approved(prompts):
        prefix = context_prefix(dp.text)
        for eid in dp.edit_ids:
            for pr in by_edit.get(eid, []):
                key = (pr.kind, pr.prompt)
                if pr.kind == "locality":
                    uses[pr.prompt] = uses.get(pr.prompt, 0) + 1
                if key in seen:
                    continue
                seen.add(key)
                if pr.kind == "locality":
                    anchors.append(pr)
                elif pr.kind in TRANSFER_KINDS:
                    taught.append((pr, prefix))
    return taught, anchors, uses


def build_transfer_set(
    model,
    tokenizer,
    prompts: Sequence[DensePrompt],
    probes: Sequence[Probe],
    *,
    config: TrainConfig | None = None,
    base_model=None,
    subjects: Mapping[str, str] | None = None,
    progress: bool = True,
) -> list[TransferExample]:
    """Answer every probe of the approved prompts' edits with the teacher (``model``).

    ``base_model`` answers locality probes that carry no recorded ``expected`` (default: the
    teacher, without any context). Rows whose answer is empty are dropped. ``subjects`` (edit
    id -> subject) marks the rows whose prompt names their edit's subject
    (``TransferExample.subject``, read by ``training.subject_gate``).
    """
    config = config or TrainConfig()
    taught, anchors, uses = _transfer_probes(prompts, probes)
    # known answers with a stored top-k need no generation: the teacher reads the known answer
    # token by token (add_teacher_topk), and where its greedy choice differs it is not followed
    forced = config.known_targets and config.topk > 0
    ask = [not (forced and _has_known_answer(pr)) for pr, _ in taught]
    asked = [t for t, a in zip(taught, ask, strict=True) if a]
    desc = "teacher" if progress else None
    generated = iter(
        _generate(
            model, tokenizer, [p.prompt for p, _ in asked], [c for _, c in asked], config, desc
        )
    )
    answers = [next(generated) if a else "" for a in ask]
    rows: list[TransferExample] = []
    for (pr, prefix), ans in zip(taught, answers, strict=True):
        known = (
            config.known_targets
            and _has_known_answer(pr)
            and not (ans and matches(ans, pr.answers))
        )
        if known:
            ans = pr.answers[0].strip()
        if ans:
            rows.append(
                TransferExample(
                    prompt=pr.prompt,
                    completion=completion_text(ans),
                    teacher_prompt=prefix + pr.prompt,
                    kind=pr.kind,
                    edit_id=pr.edit_id,
                    known=known,
                    subject=_named_subject(pr, subjects),
                    weight=config.edit_weight if pr.kind == "edit" else 1.0,
                )
            )

    missing = [p for p in anchors if not (p.expected or "").strip()]
    base_answers = _generate(
        base_model if base_model is not None else model,
        tokenizer,
        [p.prompt for p in missing],
        [None] * len(missing),
        config,
        "base answers" if progress else None,
    )
    fresh = dict(zip((p.id for p in missing), base_answers, strict=True))
    for pr in anchors:
        ans = (pr.expected or "").strip() or fresh.get(pr.id, "")
        if ans:
            # the base model saw no context: teacher_prompt == prompt marks an anchor
            rows.append(
                TransferExample(
                    prompt=pr.prompt,
                    completion=completion_text(ans),
                    teacher_prompt=pr.prompt,
                    kind="locality",
                    edit_id=pr.edit_id,
                    weight=config.locality_weight
                    * (uses[pr.prompt] if config.locality_per_edit else 1),
                )
            )
    if config.topk > 0:
        add_teacher_topk(
            model,
            tokenizer,
            rows,
            k=config.topk,
            batch_size=config.teacher_batch_size,
            known_prob=config.known_prob,
        )
    return rows


def _named_subject(probe: Probe, subjects: Mapping[str, str] | None) -> str | None:
    """The subject of ``probe``'s edit, where the probe's prompt names it."""
    subject = (subjects or {}).get(probe.edit_id or "")
    return subject if subject and subject.lower() in probe.prompt.lower() else None


def _has_known_answer(probe: Probe) -> bool:
    return probe.kind in ("edit", "rephrase") and bool(probe.answers)


def _generate(model, tokenizer, prompts, prefixes, config: TrainConfig, desc) -> list[str]:
    from skedit.sft.modelops import generate

    if not prompts:
        return []
    gens = generate(
        model,
        tokenizer,
        prompts,
        prefixes=prefixes,
        max_new_tokens=config.teacher_max_new_tokens,
        batch_size=config.teacher_batch_size,
        desc=desc,
    )
    return [first_answer(g).strip() for g in gens]


@torch.no_grad()
def add_teacher_topk(
    model,
    tokenizer,
    rows: list[TransferExample],
    *,
    k: int,
    batch_size: int = 64,
    known_prob: float = 1.0,
) -> None:
    """Fill ``teacher_topk``: per completion token, the teacher's k best (id, log-prob).

    A row marked ``known`` (its answer is known) gets :func:`known_mixture` of the teacher's
    distribution; ``known`` is left true only where that changed the teacher's distribution.
    """
    from skedit.sft.modelops import _left_pad

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        seqs, lens = [], []
        for r in chunk:
            tgt = encode_target(tokenizer, r.prompt, r.completion)
            seqs.append(encode_input(tokenizer, r.prompt, teacher_prefix(r) or None) + tgt)
            lens.append(len(tgt))
        ids, mask, pos = _left_pad(seqs, pad_id, model.device)
        keep = max(lens) + 1  # logits at the completion positions only, not the whole sequence
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep)
        logp = torch.log_softmax(logits.logits.float(), -1)
        for i, r in enumerate(chunk):
            span = logp[i, keep - lens[i] - 1 : keep - 1]
            if r.known:
                gold = torch.tensor(seqs[i][-lens[i] :], device=span.device)
                span, r.known = known_mixture(span, gold, known_prob)
            top = span.topk(k, dim=-1)
            r.teacher_topk = [
                [(int(t), round(float(v), 5)) for t, v in zip(ti, vi, strict=True)]
                for ti, vi in zip(top.indices.tolist(), top.values.tolist(), strict=True)
            ]


def known_mixture(
    logp: torch.Tensor, gold: torch.Tensor, known_prob: float
) -> tuple[torch.Tensor, bool]:
    """The teacher's per-token log-probs ``logp`` (tokens x vocab) with the known answer ``gold``
    given at least ``known_prob`` at every token: ``(1 - a) * teacher + a * onehot(gold)``, with
    ``a`` the smallest mix that reaches it. Returns the new log-probs and whether any changed.

    A teacher that says the known answer surely keeps its own distribution (its dark knowledge
    is what distillation adds); one that is unsure or wrong is pulled to the answer, so the
    student learns it with a margin. ``known_prob`` 1.0: the known answer alone (KL = its CE).
    """
    p = logp.exp()
    p_gold = p.gather(-1, gold[:, None]).squeeze(-1)
    if bool((p_gold >= known_prob).all()):
        return logp, False
    if known_prob >= 1.0:
        return torch.full_like(logp, KNOWN_FLOOR).scatter(-1, gold[:, None], 0.0), True
    a = ((known_prob - p_gold) / (1.0 - p_gold).clamp_min(1e-12)).clamp(0.0, 1.0)[:, None]
    mixed = (1.0 - a) * p
    mixed.scatter_add_(-1, gold[:, None], a)
    return mixed.clamp_min(1e-30).log().clamp_min(KNOWN_FLOOR), True


def inputs_fingerprint(
    prompts: Sequence[DensePrompt],
    probes: Sequence[Probe],
    config: TrainConfig,
    teacher: str,
    subjects: Mapping[str, str] | None = None,
) -> str:
    """A hash of everything the transfer set depends on: reuse it only when this is unchanged."""
    blob = json.dumps(
        {
            # only where given: fingerprints made without subjects stay as they were
            **({"subjects": sorted(subjects.items())} if subjects else {}),
            "prompts": [(p.id, p.text, sorted(p.edit_ids)) for p in approved(prompts)],
            "probes": sorted((p.id, p.prompt, p.kind, p.edit_id, p.expected) for p in probes),
            "teacher": teacher,
            "topk": config.topk,
            "max_new_tokens": config.teacher_max_new_tokens,
            "locality_weight": config.locality_weight,
            # only where set: fingerprints made before it stay as they were
            **({"edit_weight": config.edit_weight} if config.edit_weight != 1.0 else {}),
            **({"locality_per_edit": True} if config.locality_per_edit else {}),
            "known_targets": config.known_targets,
            "known_prob": config.known_prob if config.known_targets else None,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_transfer_set(
    run_dir: str | os.PathLike, rows: Sequence[TransferExample], fingerprint: str | None = None
) -> Path:
    path = Path(run_dir) / TRANSFER_FILE
    write_jsonl(path, rows)
    if fingerprint:
        (Path(run_dir) / (TRANSFER_FILE + ".inputs")).write_text(fingerprint + "\n")
    return path


def read_transfer_set(run_dir: str | os.PathLike) -> list[TransferExample]:
    return read_jsonl(Path(run_dir) / TRANSFER_FILE, TransferExample)


def cached_fingerprint(run_dir: str | os.PathLike) -> str | None:
    f = Path(run_dir) / (TRANSFER_FILE + ".inputs")
    return f.read_text().strip() if f.exists() else None
