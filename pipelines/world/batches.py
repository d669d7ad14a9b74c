"""The world model's training batches: documents as token ids (a word-level encoder much faster
than the tokenizer's own call), closed-book and in-context units, rows packed into numpy-filled
tensors with the loss on the answers only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from skedit.pipelines.world.corpus import Doc, DocSampler
from skedit.prompts.render import context_prefix

if TYPE_CHECKING:
    from skedit.pipelines.world.train import TrainSpec

_WORDS = re.compile(r"\w+|[^\w\s]|\n")


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


@dataclass
class Unit:
    """A packable piece of a row: an optional context segment and the segments that read it.

    Each item attends to the context (if any) and to itself only, with positions that continue
    right after the context, so every item sees exactly what ``encode_input`` would give it.
    """

    head: list[int]  # BOS + context prefix ids (no loss); empty for closed-book items
    items: list[tuple[list[int], int]]  # (ids, leading ids without loss)

    def __len__(self) -> int:
        return len(self.head) + sum(len(ids) for ids, _ in self.items)


def closed_unit(enc: FastEncoder, doc: Doc) -> Unit:
    return Unit([], [enc.encode(doc)])


def context_unit(enc: FastEncoder, context: str, qas: list[tuple[str, str]]) -> Unit:
    head = [enc.bos] + enc.ids(context_prefix(context))
    items = []
    for q, a in qas:
        q_ids = enc.ids(q)
        items.append((q_ids + enc.ids(" " + a + ".") + [enc.eos], len(q_ids)))
    return Unit(head, items)


def pack(rows: list[list[Unit]], width: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Rows of units -> input ids, labels, position ids and a (B, 1, L, L) attention mask.

    Filled in numpy and converted once: the few hundred small torch ops it took before cost
    9 ms a batch on an idle 2-core machine and 60-85 ms while other processes kept both cores
    busy, against 3 ms now.
    """
    n = len(rows)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    labels = np.full((n, width), -100, dtype=np.int64)
    pos = np.zeros((n, width), dtype=np.int64)
    seg = np.full((n, width), -1, dtype=np.int64)  # padding: its own segment
    parent = np.full((n, width), -2, dtype=np.int64)
    for r, units in enumerate(rows):
        at, next_seg = 0, 0
        for unit in units:
            ctx_seg = -3
            if unit.head:
                ctx_seg, next_seg = next_seg, next_seg + 1
                h = len(unit.head)
                ids[r, at : at + h] = unit.head
                pos[r, at : at + h] = np.arange(h)
                seg[r, at : at + h] = ctx_seg
                at += h
            for item, n_head in unit.items:
                m = len(item)
                ids[r, at : at + m] = item
                labels[r, at + n_head : at + m] = item[n_head:]
                pos[r, at : at + m] = np.arange(len(unit.head), len(unit.head) + m)
                seg[r, at : at + m] = next_seg
                parent[r, at : at + m] = ctx_seg
                next_seg += 1
                at += m
    causal = np.tril(np.ones((width, width), dtype=bool))
    same = seg[:, :, None] == seg[:, None, :]
    reads = parent[:, :, None] == seg[:, None, :]
    mask = (same | reads) & causal
    return {
        "input_ids": torch.from_numpy(ids),
        "labels": torch.from_numpy(labels),
        "position_ids": torch.from_numpy(pos),
        "attention_mask": torch.from_numpy(mask[:, None]),
    }


def sample_batch(sampler: DocSampler, enc: FastEncoder, spec: TrainSpec) -> list[list[Unit]]:
    """``spec.batch`` rows of ``spec.seq_len`` tokens, about ``context_share`` of them context."""
    rng = sampler.rng
    rows: list[list[Unit]] = []
    used = {"ctx": 1, "closed": 1}
    carried: tuple[Unit, str] | None = None  # a context too long for the rest of its row
    for _ in range(spec.batch):
        row: list[Unit] = []
        room = spec.seq_len
        while room > 12:
            if carried is not None:
                (unit, kind), carried = carried, None
            else:
                share = max(spec.context_share, 0.8) if sampler.copy_stage else spec.context_share
                want_ctx = used["ctx"] / (used["ctx"] + used["closed"]) < share
                if want_ctx and room >= 60:
                    context, qas = sampler.context_group(None, spec.questions_per_context)
                    unit, kind = context_unit(enc, context, qas), "ctx"
                else:
                    two = rng.random() < spec.two_hop_share and sampler.two_hop_people
                    unit = closed_unit(enc, sampler.two_hop() if two else sampler.fact())
                    kind = "closed"
            if kind == "ctx" and len(unit.head) + len(unit.items[0][0]) > room and row:
                # a long context starts the next row rather than being thrown away: dropping
                # them would train the longest contexts (big tables) least
                carried = (unit, kind)
                break
            while len(unit) > room and len(unit.items) > 1:
                unit.items.pop()
            if len(unit) > room:
                break
            row.append(unit)
            room -= len(unit)
            used[kind] += len(unit)
        rows.append(row)
    return rows
