"""Retention: do edits survive later fine-tuning on unrelated text? (after Wen & Zhang, 2025)

An edited model is fine-tuned with the plain language-model loss on unrelated text (on the
synthetic world: new facts about people the benchmark never edits, which the model does not
know yet; else the file the user names) for S steps, and its edit success is re-measured along
the way. Variants: with and without freezing the layers that carried the
edit (found by comparing the edited weights with the base model's), and — for skedit — a
student trained without the paraphrase rows of its transfer set.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from skedit.pipelines.eval.fluency import _pad_right, encode_texts
from skedit.pipelines.eval.scoring import evaluate_model
from skedit.pipelines.run.rundir import RunDir
from skedit.sft import arch


def edited_layers(model, base_model, *, share: float = 0.5) -> list[int]:
    """Blocks whose weights the edit changed. When every block changed (full fine-tuning),
    the ``share`` of blocks with the largest relative change."""
    base = dict(base_model.named_parameters())
    change: dict[int, list[float]] = {}
    for name, p in model.named_parameters():
        i = arch.block_index(model, name)
        if i is None or name not in base:
            continue
        d = (p.detach().float() - base[name].detach().float()).norm().item()
        n = base[name].detach().float().norm().item() or 1.0
        change.setdefault(i, [0.0, 0.0])
        change[i][0] += d * d
        change[i][1] += n * n
    rel = {i: math.sqrt(a) / math.sqrt(b) for i, (a, b) in change.items()}
    moved = sorted(i for i, r in rel.items() if r > 1e-7)
    if moved and len(moved) == len(rel):
        top = max(1, math.ceil(share * len(rel)))
        moved = sorted(sorted(rel, key=rel.get, reverse=True)[:top])
    return moved


def finetune_on_text(
    model,
    tokenizer,
    texts: Sequence[str],
    steps: int,
    *,
    lr: float = 3e-4,
    batch_size: int = 8,
    max_length: int = 128,
    answer_tokens: int | None = None,
    freeze_layers: Sequence[int] = (),
    measure: Callable[[object], dict] | None = None,
    eval_every: int | None = None,
    seed: int = 0,
    desc: str = "",
) -> list[dict]:
    """Causal-LM fine-tuning on ``texts``; ``measure(model)`` at step 0 and every ``eval_every``.

    ``answer_tokens``: loss on the last N tokens of each text only (see ``encode_texts``).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rows = encode_texts(tokenizer, texts, max_length=max_length, answer_tokens=answer_tokens)
    frozen = set(freeze_layers)
    params = []
    for name, p in model.named_parameters():
        train = arch.block_index(model, name) not in frozen
        p.requires_grad_(train)
        if train:
            params.append(p)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eval_every = eval_every or max(1, steps // 4)
    points = [{"step": 0, **measure(model)}] if measure else []
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not desc, leave=False, unit="step")
    for step in bar:
        model.train()
        pick = torch.randint(len(rows), (batch_size,), generator=gen).tolist()
        dev = next(model.parameters()).device
        ids, mask, labels = _pad_right([rows[i] for i in pick], pad, dev)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if measure and (step % eval_every == 0 or step == steps):
            model.eval()
            points.append({"step": step, "loss": round(loss.item(), 4), **measure(model)})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return points


def run_retention(
    data,
    base_model,
    tokenizer,
    edited_models: Mapping[str, object],
    texts: Sequence[str],
    *,
    steps: int,
    lr: float = 3e-4,
    batch_size: int = 8,
    answer_tokens: int | None = None,
    ablate: Mapping[str, Mapping] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Retention curves for each edited model, with and without freezing its edited layers.

    ``ablate``: student name → its ``training:`` settings; such a student is trained again
    without the paraphrase rows of its transfer set (variant ``"<name> (no paraphrases)"``).

    ``{"steps", "lr", "curves": {variant: [{"step", "edit_success", "paraphrase"}]},
    "frozen_layers": {variant: [...]}, "kept": {variant: final/initial edit success}}``.
    """
    if not texts:
        return {"skipped": "no held-out text to fine-tune on (give --heldout FILE)"}
    probes = [p for p in data.probes if p.kind in ("edit", "rephrase")]

    def measure(model) -> dict:
        res = evaluate_model(model, tokenizer, probes)
        return {
            "edit_success": res["edit_success"]["mean"],
            "paraphrase": res["paraphrase"]["mean"],
        }

    models = dict(edited_models)
    notes = []
    for name, training in (ablate or {}).items():
        if name not in models:
            continue
        try:
            models[f"{name} (no paraphrases)"] = _student_without_paraphrases(
                data, base_model, tokenizer, training
            )
        except Exception as exc:  # noqa: BLE001 - an optional variant; say why it is missing
            notes.append(f"{name} without paraphrases skipped: {exc}")
    curves, frozen, kept = {}, {}, {}
    for name, model in models.items():
        layers = edited_layers(model, base_model)
        for freeze in (False, True):
            variant = f"{name} + freeze {layers}" if freeze else name
            if freeze and not layers:
                continue
            pts = finetune_on_text(
                copy.deepcopy(model),
                tokenizer,
                texts,
                steps,
                lr=lr,
                batch_size=batch_size,
                answer_tokens=answer_tokens,
                freeze_layers=layers if freeze else (),
                measure=measure,
                seed=seed,
                desc=f"retention {variant}" if progress else "",
            )
            curves[variant] = pts
            frozen[variant] = layers if freeze else []
            first, last = pts[0]["edit_success"], pts[-1]["edit_success"]
            kept[variant] = (last / first) if first else None
    return {
        "objective": "answer tokens only" if answer_tokens else "every token",
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "texts": len(texts),
        "curves": curves,
        "frozen_layers": frozen,
        "kept": kept,
        "notes": notes,
    }


def _student_without_paraphrases(data, base_model, tokenizer, training: Mapping):
    """The same student trained on the transfer set minus its paraphrase rows."""
    from skedit.prompts.io import read_jsonl
    from skedit.prompts.schema import TransferExample
    from skedit.sft.config import TrainConfig
    from skedit.sft.train import train_in_memory

    rows = read_jsonl(RunDir(data.run_dir).transfer, TransferExample)
    rows = [r for r in rows if r.kind != "rephrase"]
    config = TrainConfig.from_dict(dict(training), source="config.yaml")
    return train_in_memory(copy.deepcopy(base_model), tokenizer, rows, config)
