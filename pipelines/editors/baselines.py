"""Baselines behind one contract: ``apply_<method>(model, tokenizer, edits, hparams) -> model``.

- ``base``: the unedited model.
- ``prompt`` (PROMPT/IKE): the unedited model; the harness puts each edit's approved dense
  prompt in its context, so this is skedit's teacher.
- ``ft-l``: EasyEdit's FT-L — fine-tune chosen MLP weights on the edit prompt; the loss is read
  at the *last prompt position only* (mean log-probability of the target's tokens there), with
  an L∞ bound on each weight's change.
- ``ft-m``: FT-M — the same weights, cross-entropy on the target tokens after the prompt
  (prompt masked), teacher-forced.
- ``lora``: LoRA adapters (peft) on every linear layer, FT-M objective, merged afterwards.
- ``rome``, ``memit``, ``alphaedit``: written elsewhere, referred to by import string and
  resolved only when asked for.

``hparams`` is a dict (or ``FTHparams``); missing keys take the defaults below, which are the
settings that edit the synthetic world model (see the benchmark report).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

import torch
from tqdm.auto import tqdm

from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import Edit
from skedit.sft import arch, batching
from skedit.sft.modelops import encode_input, encode_target

ApplyFn = Callable[..., object]


@dataclass
class FTHparams:
    """Fine-tuning baselines' settings (EasyEdit names where they exist)."""

    layers: list[int] | None = None  # transformer blocks whose weights train; None = all
    modules: list[str] = field(default_factory=lambda: ["mlp.down_proj"])  # name substrings
    lr: float = 1e-3
    steps: int = 40  # optimiser steps over the whole batch of edits
    batch_size: int = 64
    norm_constraint: float | None = None  # L∞ bound on each weight's change (FT-L: 5e-4..5e-5)
    weight_decay: float = 0.0
    lora_rank: int = 8
    lora_alpha: int = 16
    seed: int = 0
    progress: bool = False

    @classmethod
    def from_any(cls, hparams: FTHparams | Mapping | None, **defaults) -> FTHparams:
        if isinstance(hparams, FTHparams):
            return hparams
        known = {f.name for f in fields(cls)}
        given = dict(defaults, **(hparams or {}))
        unknown = set(given) - known
        if unknown:
            raise SkeditError(
                f"unknown baseline hyper-parameter(s): {', '.join(sorted(unknown))}",
                hint=f"known: {', '.join(sorted(known))}",
            )
        return cls(**given)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "progress"}


# Defaults per method: the settings that edit the small world model (100 edits: edit success
# 0.99-1.0). Tuned on it; weaker settings (lower lr, one layer, a tighter FT-L bound) keep more
# locality but edit 2-40% of the facts, e.g. FT-L with the bound 5e-3: edit 0.02, locality 0.94.
DEFAULT_HPARAMS: dict[str, dict] = {
    "ft-l": {"lr": 5e-3, "steps": 60, "modules": ["mlp.down_proj"], "norm_constraint": 2e-2},
    "ft-m": {"lr": 3e-3, "steps": 60, "modules": ["mlp.down_proj"]},
    "lora": {"lr": 5e-3, "steps": 60, "lora_rank": 8, "lora_alpha": 16},
}


def select_parameters(model, hp: FTHparams) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters FT trains: names containing one of ``modules``, in blocks ``layers``."""
    chosen = []
    for name, p in model.named_parameters():
        if hp.modules and not any(m in name for m in hp.modules):
            continue
        if hp.layers is not None and arch.block_index(model, name) not in set(hp.layers):
            continue
        chosen.append((name, p))
    if not chosen:
        raise SkeditError(
            f"no parameter matches modules={hp.modules} layers={hp.layers}",
            hint="see model.named_parameters() for the names of this architecture",
        )
    return chosen


def _edit_rows(tokenizer, edits: Sequence[Edit]) -> list[tuple[list[int], list[int]]]:
    return [
        (encode_input(tokenizer, e.prompt), encode_target(tokenizer, e.prompt, e.target_new))
        for e in edits
    ]


def edit_loss(model, rows, pad_id: int, objective: str) -> torch.Tensor:
    """FT-L (``"last"``) or FT-M (``"target"``) loss on a batch of (prompt ids, target ids)."""
    device = next(model.parameters()).device
    if objective == "last":
        ids, mask, pos = batching.pad_left([p for p, _ in rows], pad_id, device)
        logp = torch.log_softmax(
            model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1].float(), -1
        )  # (batch, vocab)
        losses = [-logp[i, torch.tensor(t, device=device)].mean() for i, (_, t) in enumerate(rows)]
        return torch.stack(losses).mean()
    ids, mask, pos = batching.pad_left([p + t for p, t in rows], pad_id, device)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
    width = ids.shape[1]
    losses = []
    for i, (_, t) in enumerate(rows):
        n = len(t)
        span = logits[i, width - n - 1 : width - 1]  # positions predicting the target tokens
        losses.append(torch.nn.functional.cross_entropy(span, ids[i, width - n :]))
    return torch.stack(losses).mean()


def finetune_edits(model, tokenizer, edits: Sequence[Edit], hp: FTHparams, objective: str):
    """Train the selected weights on the edits' prompts; return the same (edited) model."""
    torch.manual_seed(hp.seed)
    params = select_parameters(model, hp)
    for p in model.parameters():
        p.requires_grad_(False)
    for _, p in params:
        p.requires_grad_(True)
    originals = [p.detach().clone() for _, p in params] if hp.norm_constraint else []
    opt = torch.optim.Adam([p for _, p in params], lr=hp.lr, weight_decay=hp.weight_decay)
    rows = _edit_rows(tokenizer, edits)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    gen = torch.Generator().manual_seed(hp.seed)
    model.train()
    bar = tqdm(range(hp.steps), desc=f"FT ({objective})", disable=not hp.progress, leave=False)
    for _ in bar:
        order = torch.randperm(len(rows), generator=gen).tolist()[: hp.batch_size]
        loss = edit_loss(model, [rows[i] for i in order], pad, objective)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if hp.norm_constraint:
            with torch.no_grad():  # EasyEdit: keep each weight within ε of its original value
                for (_, p), p0 in zip(params, originals, strict=True):
                    p.copy_(torch.clamp(p, p0 - hp.norm_constraint, p0 + hp.norm_constraint))
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    for _, p in params:
        p.requires_grad_(False)
    return model


def apply_base(model, tokenizer, edits: Sequence[Edit], hparams=None):
    """The unedited model (also the PROMPT baseline's weights)."""
    return model


def apply_prompt(model, tokenizer, edits: Sequence[Edit], hparams=None):
    """PROMPT/IKE changes no weight: the harness adds each edit's dense prompt as context."""
    return model


def apply_ft_l(model, tokenizer, edits: Sequence[Edit], hparams=None):
    hp = FTHparams.from_any(hparams, **DEFAULT_HPARAMS["ft-l"])
    return finetune_edits(model, tokenizer, edits, hp, "last")


def apply_ft_m(model, tokenizer, edits: Sequence[Edit], hparams=None):
    hp = FTHparams.from_any(hparams, **DEFAULT_HPARAMS["ft-m"])
    return finetune_edits(model, tokenizer, edits, hp, "target")


def apply_lora(model, tokenizer, edits: Sequence[Edit], hparams=None):
    """LoRA on every linear layer (or ``layers``), FT-M objective, merged into the weights."""
    from peft import LoraConfig, get_peft_model

    hp = FTHparams.from_any(hparams, **DEFAULT_HPARAMS["lora"])
    cfg = LoraConfig(
        r=hp.lora_rank,
        lora_alpha=hp.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        layers_to_transform=hp.layers,
        bias="none",
    )
    peft_model = get_peft_model(model, cfg)
    lora_hp = FTHparams(
        **{**hp.to_dict(), "modules": ["lora_"], "layers": None, "progress": hp.progress}
    )
    finetune_edits(peft_model, tokenizer, edits, lora_hp, "target")
    return peft_model.merge_and_unload()


# name -> function, or "module:function" resolved on first use (another team's file)
BASELINES: dict[str, ApplyFn | str] = {
    "base": apply_base,
    "prompt": apply_prompt,
    "ft-l": apply_ft_l,
    "ft-m": apply_ft_m,
    "lora": apply_lora,
    "rome": "skedit.pipelines.editors.rome:apply_rome",
    "memit": "skedit.pipelines.editors.memit:apply_memit",
    "alphaedit": "skedit.pipelines.editors.memit:apply_alphaedit",
}
CONTEXT_METHODS = {"prompt"}  # evaluated with each edit's dense prompt in context
KEY_STATS_EDITORS = {"rome", "memit", "alphaedit"}  # need a corpus for their key statistics
WEIGHT_EDITING = {"ft-l", "ft-m", "lora", "rome", "memit", "alphaedit"}


def resolve(name: str) -> ApplyFn:
    """The ``apply_<method>`` function of a baseline, importing it if it lives elsewhere."""
    if name not in BASELINES:
        raise SkeditError(
            f"unknown baseline '{name}'",
            field="--baselines",
            hint=f"choose from: {', '.join(BASELINES)}",
        )
    entry = BASELINES[name]
    if callable(entry):
        return entry
    module, _, attr = entry.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise SkeditError(
            f"baseline '{name}' is not available: {entry} could not be loaded ({exc})",
            field="--baselines",
            hint="this skedit build does not include it yet; leave it out of --baselines",
        ) from exc
    return fn


def hparams_for(name: str, overrides: Mapping | None = None) -> dict:
    """The hyper-parameters a baseline runs with (defaults + overrides), for the report."""
    return {**DEFAULT_HPARAMS.get(name, {}), **(overrides or {})}
