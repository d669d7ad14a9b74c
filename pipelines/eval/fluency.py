"""General ability after an edit: perplexity on held-out text and the fluency of generations."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from skedit.pipelines.eval import metrics as M
from skedit.sft import batching
from skedit.sft.modelops import encode_input


def encode_texts(
    tokenizer, texts: Sequence[str], *, max_length: int = 256, answer_tokens: int | None = None
) -> list[tuple[list[int], list[int]]]:
    """``(ids, labels)`` per text for language-model loss (labels -100 where no loss).

    ``answer_tokens``: score only the last N tokens of each text and the end-of-sequence
    token after them — the synthetic world's lines are "question answer." and its model is
    trained on the answers only; ``None`` scores every token (any other model).
    """
    out = []
    eos = tokenizer.eos_token_id
    for t in texts:
        if not t.strip():
            continue
        ids = encode_input(tokenizer, t)[:max_length]
        if answer_tokens:
            ids = ids + ([eos] if eos is not None else [])
            n = answer_tokens + (1 if eos is not None else 0)
            labels = [-100] * (len(ids) - n) + ids[-n:]
        else:
            labels = [-100] + ids[1:]
        if len(ids) > 1 and any(x != -100 for x in labels[1:]):
            out.append((ids, labels))
    return out


def _pad_right(rows, pad_id: int, device):
    """(ids, mask, labels) of (ids, labels) rows; right padding: positions start at 0."""
    ids, mask = batching.pad([a for a, _ in rows], pad_id, left=False, device=device)
    labels, _ = batching.pad([b for _, b in rows], -100, left=False, device=device)
    return ids, mask, labels


@torch.no_grad()
def heldout_perplexity(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int = 256,
    batch_size: int = 16,
    answer_tokens: int | None = None,
    seed: int = 0,
) -> dict:
    """Perplexity on ``texts`` (see :func:`encode_texts`) with a bootstrap CI over texts."""
    per_text: list[tuple[float, int]] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = encode_texts(tokenizer, texts, max_length=max_length, answer_tokens=answer_tokens)
    for start in range(0, len(rows), batch_size):
        ids, mask, labels = _pad_right(rows[start : start + batch_size], pad, model.device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none", ignore_index=-100
        )  # (batch, width-1)
        m = (labels[:, 1:] != -100).float()
        for i in range(ids.shape[0]):
            per_text.append((float((nll[i] * m[i]).sum()), int(m[i].sum())))
    total = sum(s for s, _ in per_text)
    n = sum(c for _, c in per_text)
    if not n:
        return {"mean": None, "n": 0, "ci": None}
    # bootstrap the mean NLL over texts: one value per token, grouped by text
    values = [s / c for s, c in per_text for _ in range(c)]
    groups = [i for i, (_, c) in enumerate(per_text) for _ in range(c)]
    lo, hi = M.bootstrap_ci(values, groups=groups, seed=seed, n_resamples=500)
    return {"mean": M.perplexity(total, n), "n": n, "ci": [math.exp(lo), math.exp(hi)]}


def generation_fluency(
    model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = 32, seed: int = 0
) -> dict:
    """EasyEdit fluency (×100) of greedy generations from ``prompts``, with a bootstrap CI.

    End-of-sequence is suppressed for ``max_new_tokens`` tokens: a model that answers in one
    word and stops (the world model) would otherwise score 0 whatever its weights.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    gens: list[str] = []
    encoded = [encode_input(tokenizer, p) for p in prompts]
    with torch.no_grad():
        for start in range(0, len(encoded), 32):
            chunk = encoded[start : start + 32]
            ids, mask = batching.pad(chunk, pad_id, left=True)
            width = ids.shape[1]
            out = model.generate(
                input_ids=ids.to(model.device),
                attention_mask=mask.to(model.device),
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            gens += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    per = [100.0 * M.text_fluency(g) for g in gens]
    return M.summarise(per, seed=seed)
