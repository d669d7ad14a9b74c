"""Train the world's Llama-style model from scratch with a plain PyTorch loop (CPU friendly).

One readable loop: sample a batch of documents, right-pad, loss on the answers only, AdamW with
warmup and cosine decay. One thread by default: on a shared 2-core machine two OpenMP threads
were 2-5x slower than one under load.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from skedit.pipelines.world_corpus import Doc, DocSampler
from skedit.pipelines.world_gen import World
from skedit.prompts.render import context_prefix

_WORDS = re.compile(r"\w+|[^\w\s]|\n")


@dataclass(frozen=True)
class TrainSpec:
    """Model shape and training schedule for one world size."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    steps: int
    batch: int
    lr: float
    warmup: int
    context_share: float  # fraction of documents that carry a context
    two_hop_share: float  # fraction of closed-book documents that are two-hop questions
    max_facts: int = 16
    max_positions: int = 256


TRAIN_SPECS: dict[str, TrainSpec] = {
    "tiny": TrainSpec(64, 2, 4, 128, 120, 32, 3e-3, 20, 0.5, 0.1),
    "small": TrainSpec(128, 4, 4, 384, 2500, 64, 2e-3, 150, 0.55, 0.1),
}


class FastEncoder:
    """Word-level encoding with the tokenizer's own vocabulary and split (no per-call overhead).

    Produces exactly the ids of ``skedit.sft.modelops.encode_input`` + the answer, because the
    tokenizer is a WordLevel model over the same split (a test checks this).
    """

    def __init__(self, tokenizer) -> None:
        self.vocab = tokenizer.get_vocab()
        self.unk = tokenizer.unk_token_id
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id

    def ids(self, text: str) -> list[int]:
        v, unk = self.vocab, self.unk
        return [v.get(w, unk) for w in _WORDS.findall(text)]

    def encode(self, doc: Doc) -> tuple[list[int], int]:
        head = [self.bos]
        if doc.context is not None:
            head += self.ids(context_prefix(doc.context))
        head += self.ids(doc.question)
        tail = self.ids(" " + doc.answer + ".") + [self.eos]
        return head + tail, len(head)


def make_model(spec: TrainSpec, vocab_size: int, tokenizer, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        rope_theta=10000.0,
    )
    return LlamaForCausalLM(cfg)


def _batch(docs: list[Doc], enc: FastEncoder, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [enc.encode(d) for d in docs]
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, n_head) in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, n_head : len(row)] = ids[i, n_head : len(row)]
    return ids, labels


def sample_docs(sampler: DocSampler, spec: TrainSpec, n: int) -> list[Doc]:
    rng = sampler.rng
    out = []
    for _ in range(n):
        if rng.random() < spec.context_share:
            out.append(sampler.context_doc())
        elif rng.random() < spec.two_hop_share and sampler.two_hop_people:
            out.append(sampler.two_hop())
        else:
            out.append(sampler.fact())
    return out


def train_world_model(
    world: World,
    tokenizer,
    spec: TrainSpec,
    *,
    seed: int = 0,
    threads: int = 1,
    progress: bool = True,
):
    """Train a fresh model on the world; returns ``(model, log)`` (log: loss every 50 steps)."""
    torch.set_num_threads(threads)
    model = make_model(spec, len(tokenizer), tokenizer, seed)
    model.train()
    sampler = DocSampler(world, seed, max_facts=spec.max_facts)
    enc = FastEncoder(tokenizer)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=(0.9, 0.98),
    )

    def lr_at(step: int) -> float:
        if step < spec.warmup:
            return spec.lr * (step + 1) / spec.warmup
        t = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
        return spec.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    log: list[dict] = []
    start = time.perf_counter()
    running = None
    bar = tqdm(range(spec.steps), desc="training world model", unit="step", disable=not progress)
    for step in bar:
        ids, labels = _batch(sample_docs(sampler, spec, spec.batch), enc, tokenizer.pad_token_id)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        # right padding + causal attention: pads never influence real tokens, so no mask
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 50 == 0 or step == spec.steps - 1:
            log.append(
                {
                    "step": step,
                    "loss": round(running, 4),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            bar.set_postfix(loss=f"{running:.3f}")
    model.eval()
    return model, log


def save_model(model, tokenizer, out: Path, extra: dict) -> None:
    """``save_pretrained`` (safetensors) + tokenizer + the world's config beside them."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "world_config.json").write_text(json.dumps(extra, indent=2, sort_keys=True) + "\n")


def spec_dict(spec: TrainSpec) -> dict:
    return asdict(spec)
