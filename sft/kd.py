"""Distillation: the student (input only) matches the teacher (dense prompt + input).

Layout of a batch (B rows, completion width C):
  student: [pad … prompt ids][completion ids … pad]   prompts left-padded to Ps
  teacher: [pad … prefix ids + prompt ids][completion ids … pad]   left-padded to Pt
Both share one right-padded completion tensor, so the last ``C + 1`` positions line up:
``logits[:, -C-1:-1]`` predicts the completion tokens for teacher and student alike. Explicit
``position_ids`` keep left padding harmless for absolute-position models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import TransferExample
from skedit.sft import batching
from skedit.sft.modelops import encode_input, encode_target
from skedit.sft.transfer import teacher_prefix


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Forward KL(teacher ‖ student) per completion token, averaged over ``mask`` tokens.

    Logits are ``(B, C, V)``, mask ``(B, C)``. Scaled by ``T²`` so gradients keep their size
    across temperatures (Hinton et al.). A mask with no tokens gives 0.
    """
    t = temperature
    s_logp = F.log_softmax(student_logits.float() / t, dim=-1)
    t_logp = F.log_softmax(teacher_logits.float() / t, dim=-1)
    per_token = (t_logp.exp() * (t_logp - s_logp)).sum(-1)  # (B, C)
    m = mask.to(per_token.dtype)
    return (per_token * m).sum() / m.sum().clamp(min=1) * (t * t)


def topk_kd_loss(
    student_logits: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logp: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Forward KL from the teacher's stored top-k to the student, per completion token.

    ``topk_ids`` / ``topk_logp`` are ``(B, C, k)``: the teacher's k most likely tokens and their
    log-probs (``transfer.jsonl``'s ``teacher_topk``). The teacher's remaining mass is one
    "any other token" outcome, matched by the student's mass outside those k tokens, so this is
    the exact KL between the two distributions coarsened to k + 1 outcomes: zero when the
    student equals the teacher, never above the full-vocabulary KL, and equal to it once the
    k tokens hold all of the teacher's mass.
    """
    s_logp = F.log_softmax(student_logits.float(), dim=-1)  # (B, C, V)
    s_top = s_logp.gather(-1, topk_ids)  # (B, C, k)
    t_logp = topk_logp.float()
    t_p = t_logp.exp()
    top_kl = (t_p * (t_logp - s_top)).sum(-1)  # (B, C)
    # the rest: the teacher's leftover mass against the student's mass outside the k tokens
    t_rest = (1.0 - t_p.sum(-1)).clamp(min=0.0)
    # log of the student's mass outside the k tokens (finite fill: no NaN gradient when k = V;
    # below e^-50 the leftover mass is taken as e^-50)
    s_rest = torch.logsumexp(s_logp.scatter(-1, topk_ids, -1e4), dim=-1).clamp(min=-50.0)
    rest_kl = torch.xlogy(t_rest, t_rest) - t_rest * s_rest
    per_token = torch.where(mask.bool(), top_kl + rest_kl, 0.0)  # padding may gather -inf
    return per_token.sum() / mask.sum().clamp(min=1)


_WORD = re.compile(r"\w[\w'-]*")


def shared_words(subjects: Iterable[str | None]) -> frozenset[str]:
    """The words (lower case) that two or more of the distinct ``subjects`` contain."""
    seen: dict[str, int] = {}
    for s in {x.lower() for x in subjects if x}:
        for w in set(_WORD.findall(s)):
            seen[w] = seen.get(w, 0) + 1
    return frozenset(w for w, n in seen.items() if n > 1)


def subject_tokens(
    tokenizer, prompt: str, subject: str | None, skip: frozenset[str] = frozenset()
) -> list[int] | None:
    """0/1 per id of :func:`encode_input` ``(prompt)``: 1 where the token covers part of the
    first mention of ``subject`` (of its words not in ``skip``, unless all of them are). None
    when the subject is not named or the tokenizer gives no character offsets (a slow
    tokenizer): the row is then not gated."""
    if not subject or not getattr(tokenizer, "is_fast", False):
        return None
    start = prompt.lower().find(subject.lower())
    if start < 0:
        return None
    spans = [(start, start + len(subject))]
    words = list(_WORD.finditer(subject))
    own = [(start + m.start(), start + m.end()) for m in words if m.group().lower() not in skip]
    if own and len(own) < len(words):
        spans = own
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    head = len(encode_input(tokenizer, prompt)) - len(enc["input_ids"])  # BOS, if any
    gate = [0] * head + [
        int(any(a < e and b > s for s, e in spans)) for a, b in enc["offset_mapping"]
    ]
    return gate if any(gate) else None


def encode_example(
    tokenizer,
    ex: TransferExample,
    *,
    topk: int = 0,
    gate: bool = False,
    skip: frozenset[str] = frozenset(),
) -> dict[str, list[Any]]:
    """Ids of one transfer row: the student's prompt, the teacher's (prefix apart), the completion.

    ``topk > 0`` adds the row's stored teacher top-k, cut to its ``topk`` best (``topk_ids``,
    ``topk_logp``: one list per completion token), for distilling without running the teacher.
    Rows stored with a larger k (an earlier batch's) are cut the same way, which keeps the loss
    exact: the entries are sorted best first. ``gate`` adds where the MLPs may learn
    (``training.subject_gate``): ``gate_prompt`` (0/1 per prompt id) and ``gate_completion``
    (0/1 for every completion position): a row of an edit whose prompt names its subject
    learns only through the subject's tokens (those of its words not in ``skip``:
    ``training.subject_gate_words``), any other row through all of them.
    """
    prefix = teacher_prefix(ex) or None
    out: dict[str, list[Any]] = {
        "prompt_ids": encode_input(tokenizer, ex.prompt),
        "teacher_prompt_ids": encode_input(tokenizer, ex.prompt, prefix),
        "completion_ids": encode_target(tokenizer, ex.prompt, ex.completion),
    }
    if gate:
        keyed = (
            subject_tokens(tokenizer, ex.prompt, ex.subject, skip)
            if ex.kind != "locality"
            else None
        )
        out["gate_prompt"] = keyed or [1] * len(out["prompt_ids"])
        out["gate_completion"] = [0 if keyed else 1]
    if topk > 0:
        steps = ex.teacher_topk or []
        n = len(out["completion_ids"])
        if len(steps) != n or any(len(step) < topk for step in steps):
            stored = f"{len(steps)} tokens x {min((len(x) for x in steps), default=0)}"
            raise SkeditError(
                f"transfer row {ex.prompt!r} stores the teacher's top-k for {stored}; "
                f"training needs {n} tokens (its completion {ex.completion!r}) x {topk}",
                field="teacher_topk",
                hint="rebuild the transfer set with this `topk` (delete transfer.jsonl and rerun "
                "`skedit sft`), or train with the live teacher (`--kd-topk 0`)",
            )
        out["topk_ids"] = [[int(t) for t, _ in step[:topk]] for step in steps]
        out["topk_logp"] = [[float(v) for _, v in step[:topk]] for step in steps]
    return out


def join_completion(prompt_ids, prompt_mask, comp_ids, comp_mask) -> dict[str, torch.Tensor]:
    """Concatenate left-padded prompts with the shared right-padded completion."""
    ids = torch.cat([prompt_ids, comp_ids], dim=1)
    mask = torch.cat([prompt_mask, comp_mask], dim=1)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
    }


class KDCollator:
    """Collates :func:`encode_example` rows into student and teacher batches (see module doc)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = self.pad_token_id
        sp, spm = batching.pad([f["prompt_ids"] for f in features], pad, left=True)
        tp, tpm = batching.pad([f["teacher_prompt_ids"] for f in features], pad, left=True)
        comp, cm = batching.pad([f["completion_ids"] for f in features], pad, left=False)
        student = join_completion(sp, spm, comp, cm)
        labels = torch.full_like(student["input_ids"], -100)
        labels[:, sp.shape[1] :] = comp.masked_fill(cm == 0, -100)
        batch = {**student, "labels": labels, "completion_ids": comp, "completion_mask": cm}
        if "gate_prompt" in features[0]:
            gp, _ = batching.pad([f["gate_prompt"] for f in features], 0, left=True)
            gc = torch.tensor([f["gate_completion"] for f in features], dtype=torch.long)
            batch["gate_mask"] = torch.cat([gp, cm * gc], dim=1).bool()
        if "topk_ids" in features[0]:  # the stored teacher: no teacher inputs needed
            width, k = comp.shape[1], len(features[0]["topk_ids"][0])
            ids = torch.zeros((len(features), width, k), dtype=torch.long)
            logp = torch.zeros((len(features), width, k), dtype=torch.float32)
            for i, f in enumerate(features):
                n = len(f["topk_ids"])
                ids[i, :n] = torch.tensor(f["topk_ids"], dtype=torch.long)
                logp[i, :n] = torch.tensor(f["topk_logp"], dtype=torch.float32)
            return {**batch, "topk_ids": ids, "topk_logp": logp}
        teacher = join_completion(tp, tpm, comp, cm)
        return {**batch, **{f"teacher_{k}": v for k, v in teacher.items()}}


class SubjectGate:
    """Forward hooks on MLP modules: where ``mask`` (B, T) is False the module's output passes
    no gradient (its value is unchanged), so the weights learn only from the positions the mask
    keeps. Inactive while ``mask`` is None and under ``torch.no_grad``."""

    def __init__(self, modules) -> None:
        self.mask: torch.Tensor | None = None
        self.handles = [m.register_forward_hook(self._hook) for m in modules]

    def _hook(self, module, args, output):
        if self.mask is None or not torch.is_grad_enabled():
            return None
        out = output[0] if isinstance(output, tuple) else output
        if out.shape[:2] != self.mask.shape:
            return None  # not the student's batch (a teacher's longer input)
        keep = self.mask.to(out.device)[..., None]
        gated = torch.where(keep, out, out.detach())
        return (gated, *output[1:]) if isinstance(output, tuple) else gated

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


class KDTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss is KL to a teacher that reads the dense prompt.

    Batches that carry ``topk_ids`` (``kd_teacher: topk``) are scored against the teacher's
    top-k stored in the transfer set, and no teacher runs. Otherwise ``teacher_model=None``
    means the student's own base weights: the peft model with its adapters disabled (LoRA);
    or pass a frozen copy made *before* this trainer is built (SFTTrainer patches ``forward``
    at init).
    """

    # our loss is a per-micro-batch mean: let Trainer divide it by the accumulation steps
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args,
        teacher_model=None,
        temperature: float = 1.0,
        kl_weight: float = 1.0,
        ce_weight: float = 0.0,
        gate: SubjectGate | None = None,
        preserve=None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.preserve = preserve
        self.teacher_model = teacher_model
        if teacher_model is not None:
            teacher_model.to(self.args.device)
            teacher_model.eval()
            teacher_model.requires_grad_(False)
        self.temperature = temperature
        self.kl_weight = kl_weight
        self.ce_weight = ce_weight

    @torch.no_grad()
    def _teacher_logits(self, model, inputs: dict[str, torch.Tensor], keep: int) -> torch.Tensor:
        teacher_inputs = {
            "input_ids": inputs["teacher_input_ids"],
            "attention_mask": inputs["teacher_attention_mask"],
            "position_ids": inputs["teacher_position_ids"],
        }
        if self.teacher_model is not None:
            return self.teacher_model(**teacher_inputs, logits_to_keep=keep, use_cache=False).logits
        peft_model = self.accelerator.unwrap_model(model)
        ctx = (
            peft_model.disable_adapter()
            if hasattr(peft_model, "disable_adapter")
            else nullcontext()
        )
        with ctx:
            return model(**teacher_inputs, logits_to_keep=keep, use_cache=False).logits

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        comp, cmask = inputs["completion_ids"], inputs["completion_mask"]
        keep = comp.shape[1] + 1
        if self.gate is not None:
            self.gate.mask = inputs.get("gate_mask")
        try:
            out = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                position_ids=inputs["position_ids"],
                logits_to_keep=keep,
                use_cache=False,
            )
        finally:
            if self.gate is not None:
                self.gate.mask = None
        s_logits = out.logits[:, :-1]  # (B, C, V): predictions of the completion tokens
        if "topk_ids" in inputs:
            kl = topk_kd_loss(s_logits, inputs["topk_ids"], inputs["topk_logp"], cmask)
            t_best = inputs["topk_ids"][..., 0]
        else:
            t_logits = self._teacher_logits(model, inputs, keep)[:, :-1]
            kl = kd_loss(s_logits, t_logits, cmask, self.temperature)
            t_best = t_logits.argmax(-1)
        loss = self.kl_weight * kl
        ce = torch.zeros((), device=kl.device)
        if self.ce_weight:
            ce = F.cross_entropy(
                s_logits.float().flatten(0, 1),
                comp.masked_fill(cmask == 0, -100).flatten(),
                ignore_index=-100,
            )
            loss = loss + self.ce_weight * ce
        mode = "train" if model.training else "eval"
        if self.preserve is not None and model.training:
            term, value = self.preserve.term()
            loss = loss + term
            self._metrics[mode]["preserve"].append(value.item())
        with torch.no_grad():
            agree = ((s_logits.argmax(-1) == t_best) & (cmask == 1)).sum()
            self._metrics[mode]["kl"].append(kl.item())
            if self.ce_weight:
                self._metrics[mode]["ce"].append(ce.item())
            self._metrics[mode]["teacher_agreement"].append(
                (agree / cmask.sum().clamp(min=1)).item()
            )
        return (loss, out) if return_outputs else loss
