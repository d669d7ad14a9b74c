"""sft.batching pads rows left or right, with masks and position ids."""

from __future__ import annotations

import torch

from skedit.sft.batching import pad, positions


def test_left_and_right_padding_with_masks_and_positions():
    ids, mask = pad([[5, 6, 7], [8], []], 0, left=True)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]
    assert positions(mask).tolist() == [[0, 1, 2], [0, 0, 0], [0, 0, 0]]
    ids, mask = pad([[5, 6, 7], [8]], -100, left=False, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [8, -100, -100]] and ids.dtype == torch.long
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
