"""training.delta_scale: the student keeps a share of its trained change."""

from __future__ import annotations

import copy

import pytest
import torch

from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import TransferExample
from skedit.sft.config import TrainConfig
from skedit.sft.modelops import load_model
from skedit.sft.train import train_in_memory

ROWS = [
    TransferExample(
        prompt="Where was Alice born? She was born in",
        completion=" Paris",
        teacher_prompt="Context: Alice was born in Paris.\nWhere was Alice born? She was born in",
        kind="rephrase",
        edit_id="e1",
        subject="Alice",
    ),
    TransferExample(
        prompt="Bob lives in", completion=" London", teacher_prompt="Bob lives in", kind="locality"
    ),
]


@pytest.mark.parametrize(
    "scope",
    [dict(scope="layers", layers=[1], modules=["mlp"]), dict(scope="lora", lora_r=4)],
    ids=["layers", "lora"],
)
def test_the_student_keeps_the_given_share_of_its_change(bpe_lm_dir, scope):
    """With delta_scale 0.5 every trained weight lies halfway between the base and the student
    trained the same way with 1.0 (LoRA: the merged update is halved, not quartered), and the
    weights training did not touch are the base's."""
    base, tok = load_model(bpe_lm_dir, device="cpu")
    cfg = dict(method="kd", **scope, max_steps=4, batch_size=2, warmup_steps=0, seed=0)
    cfg["learning_rate"] = 1e-2
    trained = {}
    for s in (1.0, 0.5):
        config = TrainConfig(**cfg, delta_scale=s)
        trained[s] = train_in_memory(copy.deepcopy(base), tok, ROWS, config).state_dict()
    b = base.state_dict()
    changed = [k for k in b if not torch.equal(trained[1.0][k], b[k])]
    assert changed and len(changed) < len(b)
    for k in b:
        half = b[k] + 0.5 * (trained[1.0][k] - b[k]) if k in changed else b[k]
        torch.testing.assert_close(trained[0.5][k], half, atol=1e-6, rtol=1e-5)


def test_delta_scale_is_checked():
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(SkeditError, match="delta_scale must be in"):
            TrainConfig(delta_scale=bad)
    assert TrainConfig.from_dict({"delta_scale": 0.9}).delta_scale == 0.9
