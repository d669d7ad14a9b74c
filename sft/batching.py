"""Padding token rows into tensors: the one implementation every batched forward pass uses.

Left padding for generation and for prompts whose next token is read at the last position;
right padding for teacher-forced text. ``positions`` gives the position ids of left-padded rows
(GPT-2's absolute positions are wrong without them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad(
    rows: Sequence[Sequence[int]], pad_id: int, *, left: bool, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, attention mask)``, both ``(len(rows), longest row)``; empty rows stay all pad."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if not len(r):
            continue
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl] = torch.tensor(list(r), dtype=torch.long)
        mask[i, sl] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 at each row's first real token."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def pad_left(
    rows: Sequence[Sequence[int]], pad_id: int, device=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, attention mask, position ids)`` of left-padded rows: for generation, and for
    prompts whose next token is read at the last position."""
    ids, mask = pad(rows, pad_id, left=True, device=device)
    return ids, mask, positions(mask)
