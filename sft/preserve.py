"""Keep what the trained projections compute on ordinary inputs: ``training.preserve_weight``
and ``training.nullspace``.

The locality rows (anchors) hold the base model's *answers* through the distillation loss, one
output distribution per answer token. This adds a denser term, MEMIT's preservation objective
applied to gradient training: for every trained linear map ``W`` (input ``x``),

    penalty(W) = tr(ΔW C ΔWᵀ) / tr(W₀ C W₀ᵀ),   C = E[x xᵀ],   ΔW = W - W₀,

``C`` taken over every token (prompt and completion) of the locality rows, ``W₀`` the weights
before training. It is the relative mean squared change of the map's output on those tokens,
so a change that edits a subject is pushed into directions the anchors' tokens do not use,
in every trained layer, not only where an anchor's answer is read. The loss adds
``preserve_weight`` times the penalty averaged over the trained maps (dimensionless, so one
weight serves models of any size). Each step costs one ``(out, in) x (in, in)`` product per
trained map; memory holds a copy of the trained weights and one ``(in, in)`` matrix per map
(for a 7B model's MLP down projection, 11008² floats: about 0.5 GB per layer).

``nullspace`` is the hard form of the same idea, AlphaEdit's constraint applied to gradient
training: ``C`` is taken over the locality rows' tokens and text sampled from the base model,
its eigenvectors that carry the given share of its trace are the directions ordinary inputs
use, and after every optimizer step ``ΔW ← ΔW P`` with ``P`` the projector onto the other
eigenvectors, so the trained change does nothing to an input inside the used directions. The
memory is the penalty's: a copy of the trained weights and one ``(in, in)`` matrix per map.
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn
from transformers import TrainerCallback

from skedit.prompts.errors import SkeditError
from skedit.sft.modelops import encode_input, encode_target, input_moments, sample_prefixes


def preserved_linears(model) -> dict[str, nn.Linear]:
    """The trainable linear maps of ``model`` (after its scope is applied), output head apart."""
    head = model.get_output_embeddings()
    return {
        name: mod
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and mod is not head and mod.weight.requires_grad
    }


def anchor_rows(tokenizer, examples) -> list[list[int]]:
    """Token ids (prompt and completion) of the transfer set's locality rows."""
    return [
        encode_input(tokenizer, ex.prompt) + encode_target(tokenizer, ex.prompt, ex.completion)
        for ex in examples
        if ex.kind == "locality"
    ]


def check_unsharded(field: str) -> None:
    """These terms (and ``training.delta_scale``) read and write whole weight matrices: refuse
    a launch that shards them (FSDP, DeepSpeed ZeRO-3; accelerate says so in the environment)."""
    env = os.environ
    fsdp = env.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
    zero3 = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "") == "3"
    if fsdp or zero3:
        raise SkeditError(
            f"training.{field} needs whole weight matrices, but this launch shards them "
            f"({'FSDP' if fsdp else 'DeepSpeed ZeRO-3'})",
            field=field,
            hint="train with DDP or ZeRO-1/2 (--accelerate-config multi_gpu, zero2), "
            f"or set {field} 0",
        )


def map_moments(model, tokenizer, examples, field: str, samples: int = 0):
    """``(linears, moments, tokens)``: ``model``'s trainable maps and ``E[x xᵀ]`` of their
    inputs over the locality rows of ``examples`` and ``samples`` texts sampled from ``model``
    (48 tokens each, seeded), read before any training; ``field`` names the option asking."""
    check_unsharded(field)
    linears = preserved_linears(model)
    rows = anchor_rows(tokenizer, examples)
    if samples:
        print(f"skedit: sampling {samples} texts for {field}", file=sys.stderr, flush=True)
    for start in range(0, samples, 64):
        texts = sample_prefixes(model, tokenizer, min(64, samples - start), 48, 1 + start)
        rows += [tokenizer(t)["input_ids"] for t in texts]
    moments, count = input_moments(
        model, linears, rows, pad_id=tokenizer.pad_token_id or 0, desc=f"{field} statistics"
    )
    if not count:
        raise SkeditError(
            f"training.{field} needs anchor tokens, but the transfer set has no locality rows"
            + (" and no text is sampled" if field == "nullspace" else ""),
            field=field,
            hint=f"set {field} 0, or let the agents write locality probes"
            + (" (or nullspace_samples above 0)" if field == "nullspace" else ""),
        )
    return linears, moments, count


def anchor_preserve(model, tokenizer, examples, weight: float) -> Preserve:
    """The penalty for ``model``'s trainable maps, its statistics read from the locality rows
    of ``examples``."""
    linears, moments, _ = map_moments(model, tokenizer, examples, "preserve_weight")
    return Preserve(linears, moments, weight)


class Preserve:
    """The penalty's value and gradient for the current weights (see the module docstring)."""

    def __init__(self, linears: dict[str, nn.Linear], moments: dict[str, torch.Tensor], weight):
        self.weight = float(weight)
        self.items = []
        for name, mod in linears.items():
            w0 = mod.weight.detach().float().clone()
            c = moments[name].to(w0.device)
            scale = float((w0 @ c * w0).sum().clamp(min=1e-12))
            self.items.append((mod.weight, w0, c, scale))

    def term(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss_term, value)``: ``loss_term`` has the penalty's value *and* its gradient
        (``2 ΔW C`` per map, computed once, without autograd through the product)."""
        total = None
        grad_part = None
        for w, w0, c, scale in self.items:
            delta = w.detach().float() - w0
            p = delta @ c  # (out, in)
            value = (delta * p).sum() / scale
            # zero-valued, with the penalty's gradient 2 p / scale (d/dW of sum(W * p) is p)
            g = ((w.float() - w.detach().float()) * (2.0 * p / scale)).sum()
            total = value if total is None else total + value
            grad_part = g if grad_part is None else grad_part + g
        n = len(self.items)
        value = self.weight * total / n
        return self.weight * grad_part / n + value.detach(), value.detach()


def null_space(model, tokenizer, examples, share: float, samples: int) -> NullSpace:
    """The projection of ``training.nullspace`` for ``model``'s trainable maps, its statistics
    read from the locality rows of ``examples`` and ``samples`` sampled texts."""
    linears, moments, count = map_moments(model, tokenizer, examples, "nullspace", samples)
    space = NullSpace(linears, moments, share)
    used = sum(space.used.values()) / max(1, len(space.used))
    size = sum(w.shape[1] for w, _, _ in space.items) / max(1, len(space.items))
    print(
        f"skedit: null space over {count} tokens: the change keeps off {used:.0f} of "
        f"{size:.0f} input directions per map (mean)",
        file=sys.stderr,
        flush=True,
    )
    return space


def used_directions(vals: torch.Tensor, share: float) -> int:
    """How many of the leading eigenvectors carry ``share`` of the trace (at least one), given
    the eigenvalues in ascending order (as ``torch.linalg.eigh`` returns them)."""
    vals = vals.flip(0).clamp(min=0)
    cum = torch.cumsum(vals, 0) / vals.sum().clamp(min=1e-30)
    return min(int((cum < share).sum()) + 1, len(vals))


class NullSpace:
    """``ΔW ← ΔW P`` for every trained map after each optimizer step (the module docstring)."""

    def __init__(self, linears: dict[str, nn.Linear], moments: dict[str, torch.Tensor], share):
        self.items = []
        self.used: dict[str, int] = {}
        for name, mod in linears.items():
            vals, vecs = torch.linalg.eigh(moments[name].double())  # ascending
            r = used_directions(vals, share)
            free = vecs[:, : len(vals) - r].to(mod.weight.device)
            proj = (free @ free.T).float()
            self.items.append((mod.weight, mod.weight.detach().float().clone(), proj))
            self.used[name] = r

    @torch.no_grad()
    def project(self) -> None:
        for w, w0, proj in self.items:
            delta = w.float() - w0
            w.copy_((w0 + delta @ proj).to(w.dtype))


class NullSpaceCallback(TrainerCallback):
    """Projects after every optimizer step, before the step's checkpoint is written."""

    def __init__(self, space: NullSpace) -> None:
        self.space = space

    def on_step_end(self, args, state, control, **kwargs):
        self.space.project()
