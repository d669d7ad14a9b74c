"""Model operations every stage uses: load a causal LM, answer greedily, score a target.

Works for any Hugging Face causal LM. A context (a dense prompt) is tokenised on its own and its
ids are put before the probe's ids, so the probe and target tokens are the same with and
without the context: that is what lets a teacher's answer train a student token for token.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from skedit.sft import batching


def load_model(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
):
    """Load ``(model, tokenizer)`` from a local folder or hub id, ready for batched inference.

    ``dtype``: a torch dtype or its name (``"bfloat16"``, ``"auto"``); float32 by default.
    ``device_map`` (e.g. ``"auto"``) places the weights with accelerate and ``device`` is then
    ignored; otherwise the model goes to ``device`` (CUDA when available, else CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_model_path(path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    prepare_tokenizer(tokenizer)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
    extra = {"device_map": device_map} if device_map is not None else {}
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype or torch.float32, trust_remote_code=trust_remote_code, **extra
    )
    if device_map is None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device)
    model.eval()
    return model, tokenizer


def check_model_path(path: str | os.PathLike) -> str:
    """``path`` if it can name a model: a folder with ``config.json``, a real model skedit
    ships (``skedit model list``), or a hub id
    (``name`` or ``org/name``) that is not an existing file or folder. Else a clear error,
    before any work (transformers would answer with a traceback about repo ids)."""
    import re

    from skedit.prompts.errors import SkeditError
    from skedit.sft.hub import resolve_model

    path = resolve_model(path)  # a known real-model name: its cached folder, pulled on first use
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise SkeditError(
                "not a model folder (no config.json)",
                file=path,
                hint="give the folder a transformers model was saved to (save_pretrained)",
            )
        return str(local)
    if local.exists() or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", path):
        raise SkeditError(
            "model folder not found",
            file=path,
            hint="give a local folder with config.json, or a hub id such as org/name",
        )
    return path


def prepare_tokenizer(tokenizer) -> None:
    """Give the tokenizer a pad token (the EOS when it has none) and pad on the left."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


def encode_input(tokenizer, prompt: str, prefix: str | None = None) -> list[int]:
    """Ids of ``prefix + prompt`` with the two parts tokenised apart (BOS, if any, first)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    head = tokenizer("", add_special_tokens=True)["input_ids"]  # BOS for tokenizers that add one
    if prefix:
        head = head + tokenizer(prefix, add_special_tokens=False)["input_ids"]
    return head + prompt_ids


def encode_target(tokenizer, prompt: str, target: str) -> list[int]:
    """Ids of the target as they follow ``prompt`` in running text (" " + target).

    Tokenising ``prompt + " " + target`` and cutting off the prompt's ids gets leading spaces
    right for byte-level BPE and SentencePiece alike; where the prompt's ids are not a prefix
    of the whole (a merge across the boundary), the target is tokenised alone with its space.
    """
    target = target.strip()
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + " " + target, add_special_tokens=False)["input_ids"]
    if full[: len(p)] == p and len(full) > len(p):
        return full[len(p) :]
    return tokenizer(" " + target, add_special_tokens=False)["input_ids"]


_left_pad = batching.pad_left  # the name sft.transfer imports


def _batches(n: int, batch_size: int, desc: str | None):
    starts = range(0, n, batch_size)
    if desc:
        return tqdm(starts, desc=desc, unit="batch", total=len(starts), leave=False)
    return starts


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    prefixes: Sequence[str | None] | None = None,
    max_new_tokens: int = 8,
    batch_size: int = 64,
    desc: str | None = None,
    repetition_penalty: float | None = None,
) -> list[str]:
    """Greedy continuations of each prompt (with its context prefix, if given), decoded.
    ``repetition_penalty`` (transformers' own) keeps a list the model writes from repeating one
    item."""
    if not prompts:
        return []
    prefixes = list(prefixes) if prefixes is not None else [None] * len(prompts)
    encoded = [encode_input(tokenizer, p, c) for p, c in zip(prompts, prefixes, strict=True)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[str] = []
    for start in _batches(len(encoded), batch_size, desc):
        ids, mask, _ = _left_pad(encoded[start : start + batch_size], pad_id, model.device)
        gen = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
            **({"repetition_penalty": repetition_penalty} if repetition_penalty else {}),
        )
        new = gen[:, ids.shape[1] :]
        out += tokenizer.batch_decode(new, skip_special_tokens=True)
    return out


@dataclass(frozen=True)
class TargetScore:
    """Teacher-forced score of one target: EasyEdit's token accuracy and its log-probability."""

    token_accuracy: float  # fraction of target tokens that are the argmax given the true prefix
    logprob: float  # sum of the target tokens' log-probabilities
    n_tokens: int
    predicted: tuple[int, ...]  # argmax ids at the target positions


@torch.no_grad()
def score_targets(
    model,
    tokenizer,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    prefixes: Sequence[str | None] | None = None,
    batch_size: int = 64,
    desc: str | None = None,
) -> list[TargetScore]:
    """One forward pass on ``prompt + " " + target`` per row; score the target positions."""
    if not prompts:
        return []
    prefixes = list(prefixes) if prefixes is not None else [None] * len(prompts)
    rows = []
    for p, t, c in zip(prompts, targets, prefixes, strict=True):
        tgt = encode_target(tokenizer, p, t)
        rows.append((encode_input(tokenizer, p, c), tgt))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[TargetScore] = []
    for start in _batches(len(rows), batch_size, desc):
        chunk = rows[start : start + batch_size]
        ids, mask, pos = _left_pad([a + b for a, b in chunk], pad_id, model.device)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        width = ids.shape[1]
        for i, (_, tgt) in enumerate(chunk):
            n = len(tgt)
            # logits at position j predict token j+1; the target occupies the last n positions
            span = logp[i, width - n - 1 : width - 1]  # (n, vocab)
            want = torch.tensor(tgt, device=span.device)
            pred = span.argmax(-1)
            out.append(
                TargetScore(
                    token_accuracy=float((pred == want).float().mean()) if n else 0.0,
                    logprob=float(span.gather(-1, want[:, None]).sum()) if n else 0.0,
                    n_tokens=n,
                    predicted=tuple(int(x) for x in pred.tolist()),
                )
            )
    return out


@torch.no_grad()
def input_moments(
    model,
    modules: dict[Any, torch.nn.Module],
    rows: Sequence[list[int]],
    *,
    pad_id: int,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "input statistics",
) -> tuple[dict[Any, torch.Tensor], int]:
    """``E[x xᵀ]`` (float32) of each module's input over every token of ``rows`` (token id
    lists, empty ones skipped), keyed as ``modules`` is, and the number of tokens; no entries
    when there were none."""
    sums: dict[Any, torch.Tensor] = {}
    count = 0
    keep: torch.Tensor | None = None

    def hook(key):
        def fn(_mod, args, _out):
            x = args[0][keep].float()  # (tokens, in)
            s = x.T @ x
            sums[key] = s if key not in sums else sums[key] + s

        return fn

    handles = [mod.register_forward_hook(hook(key)) for key, mod in modules.items()]
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(rows), desc=desc, unit="row", disable=not progress, leave=False)
    try:
        for start in range(0, len(rows), batch_size):
            chunk = [r for r in rows[start : start + batch_size] if r]
            if chunk:
                ids, mask = batching.pad(chunk, pad_id, left=False)
                keep = mask.bool().to(model.device)
                model(
                    input_ids=ids.to(model.device),
                    attention_mask=mask.to(model.device),
                    logits_to_keep=1,
                    use_cache=False,
                )
                count += int(keep.sum())
            bar.update(len(rows[start : start + batch_size]))
    finally:
        bar.close()
        for h in handles:
            h.remove()
        model.train(was_training)
    return {key: s / count for key, s in sums.items()}, count


@torch.no_grad()
def sample_prefixes(model, tokenizer, n: int, length: int, seed: int) -> list[str]:
    """``n`` short texts sampled from the model (seeded); each is put as ``"{text}. {prompt}"``."""
    if n <= 0:
        return []
    start = tokenizer("", add_special_tokens=True)["input_ids"]
    if not start:
        start = [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0]
    ids = torch.tensor([start] * n, device=model.device)
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            top_k=5,
            max_new_tokens=length,
            min_new_tokens=length,
            pad_token_id=tokenizer.pad_token_id,
        )
    texts = tokenizer.batch_decode(out[:, len(start) :], skip_special_tokens=True)
    return [t.replace("{", "").replace("}", "").strip() for t in texts]
