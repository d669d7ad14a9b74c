"""Two-step training runs of every method and scope on a tiny model; resume after a crash."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from skedit.prompts.schema import TransferExample
from skedit.sft.config import TrainConfig
from skedit.sft.train import read_manifest, train_in_memory, train_student

EXAMPLES = [
    TransferExample(
        prompt="alice was born in",
        completion=" rome",
        kind="edit",
        edit_id="e1",
        teacher_prompt="context : alice born rome .\nalice was born in",
    ),
    TransferExample(
        prompt="where was alice born ?",
        completion=" rome .",
        kind="rephrase",
        edit_id="e1",
        teacher_prompt="context : alice born rome .\nwhere was alice born ?",
    ),
    TransferExample(
        prompt="bob lives in",
        completion=" london",
        kind="locality",
        edit_id="e1",
        teacher_prompt="bob lives in",
        weight=2.0,
    ),
]


def _cfg(**kw) -> TrainConfig:
    base = dict(max_steps=2, batch_size=4, warmup_steps=0, learning_rate=1e-2, save_steps=100)
    return TrainConfig(**{**base, **kw})


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


SCOPES = {
    "full": ({}, lambda name: True),
    "lora": (
        {"layers": [1], "lora_targets": ["down_proj"]},
        lambda name: name == "model.layers.1.mlp.down_proj.weight",
    ),
    "layers": (
        {"layers": [1], "modules": ["mlp"]},
        lambda name: name.startswith("model.layers.1.mlp."),
    ),
}


@pytest.mark.parametrize("method", ["sft", "kd"])
@pytest.mark.parametrize("scope", list(SCOPES))
def test_two_steps_log_a_loss_and_change_exactly_the_trainable_weights(
    tiny_lm_dir, tmp_path, method, scope
):
    extra, should_change = SCOPES[scope]
    res = train_student(
        tiny_lm_dir, EXAMPLES, _cfg(method=method, scope=scope, **extra), tmp_path / "model"
    )
    losses = [h["loss"] for h in res.log_history if "loss" in h]
    assert len(losses) == 2 and all(v == v and v >= 0 for v in losses)
    if method == "kd":
        assert any("kl" in h for h in res.log_history)
    before = load_file(tiny_lm_dir / "model.safetensors")
    after = load_file(tmp_path / "model" / "model.safetensors")
    assert set(after) == set(before)  # LoRA was merged: a plain model was saved
    want = {k for k in before if should_change(k)}
    assert _changed(before, after) == want
    assert res.trainable_parameters > 0
    assert (tmp_path / "model" / "loss.png").stat().st_size > 0
    assert not (tmp_path / "model" / "checkpoints").exists()
    manifest = read_manifest(tmp_path / "model")
    assert manifest["edit_ids"] == ["e1"] and manifest["batches"][0]["method"] == method


def test_gradient_accumulation_does_not_change_the_update(tiny_lm_dir):
    """Batch 4 in one micro-batch vs 2 x 2 accumulated: the same step (the KD loss is a mean)."""
    from skedit.sft.modelops import load_model

    rows = [
        EXAMPLES[0],
        EXAMPLES[0].model_copy(
            update={
                "prompt": "where was alice born ?",
                "teacher_prompt": "context : alice born rome .\nwhere was alice born ?",
            }
        ),
        EXAMPLES[2].model_copy(update={"weight": 1.0}),
        EXAMPLES[2].model_copy(
            update={"prompt": "bob was born in", "weight": 1.0, "teacher_prompt": "bob was born in"}
        ),
    ]
    outs = []
    for bs, ga in ((4, 1), (2, 2)):
        model, tok = load_model(tiny_lm_dir, device="cpu")
        cfg = _cfg(
            method="kd",
            max_steps=1,
            batch_size=bs,
            grad_accum=ga,
            learning_rate=1e-1,
            kl_weight=0.5,
            ce_weight=1.0,
            lr_scheduler="constant",
            max_grad_norm=0.0,  # clipping would hide a doubled gradient
            optim="sgd",  # Adam's first step is blind to a doubled gradient; SGD is not
        )
        outs.append(train_in_memory(model, tok, rows, cfg).state_dict())
    base = load_file(tiny_lm_dir / "model.safetensors")
    assert _changed(base, outs[0])
    for k in base:
        torch.testing.assert_close(outs[0][k], outs[1][k], atol=1e-6, rtol=1e-4)


class _Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 3:
            raise KeyboardInterrupt  # killed after checkpoint-2 was written


class _Count(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kw):
        self.steps.append(state.global_step)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"scope": "layers", "layers": [1], "modules": ["mlp"], "nullspace": 0.9},
        {"delta_scale": 0.5},
    ],
    ids=["plain", "nullspace", "delta_scale"],
)
def test_killed_run_resumes_from_the_last_checkpoint(tiny_lm_dir, tmp_path, extra):
    """A run killed mid-way resumes from its last checkpoint and ends where an uninterrupted run
    ends; with ``training.nullspace`` too (the projection is recomputed from the base model on
    resume, and every checkpoint was written after its step's projection), and with
    ``training.delta_scale`` (the change is scaled from the base, not from the checkpoint)."""
    cfg = _cfg(method="sft", max_steps=4, batch_size=2, save_steps=2, learning_rate=1e-3, **extra)
    with pytest.raises(KeyboardInterrupt):
        train_student(tiny_lm_dir, EXAMPLES, cfg, tmp_path / "model", callbacks=[_Crash()])
    assert (tmp_path / "model" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "model" / "model.safetensors").exists()
    count = _Count()
    res = train_student(
        tiny_lm_dir, EXAMPLES, cfg, tmp_path / "model", resume=True, callbacks=[count]
    )
    assert count.steps == [3, 4]  # steps 1-2 came from the checkpoint, not trained again
    assert res.steps == 4
    # the resumed student equals one trained without interruption
    full = train_student(tiny_lm_dir, EXAMPLES, cfg, tmp_path / "straight")
    a = load_file(tmp_path / "model" / "model.safetensors")
    b = load_file(full.model_dir / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


def test_bad_scope_options_are_user_errors():
    from skedit.prompts.errors import SkeditError

    with pytest.raises(SkeditError, match="layers"):
        TrainConfig(scope="layers")
    with pytest.raises(SkeditError, match="unknown training option"):
        TrainConfig.from_dict({"lr": 1})
    # a quoted "false" would otherwise switch the option on (a non-empty string is true)
    with pytest.raises(SkeditError, match="locality_per_edit must be true or false"):
        TrainConfig.from_dict({"locality_per_edit": "false"})
    assert TrainConfig.from_dict({"subject_gate": False}).subject_gate is False


def test_stored_topk_from_a_teacher_with_another_tokenizer_is_refused(tiny_lm_dir, tmp_path):
    """The stored top-k are the teacher's token ids: a teacher whose tokenizer numbers words
    differently (same size) would teach the wrong tokens, so training refuses it."""
    import json
    import shutil

    from skedit.prompts.errors import SkeditError

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_lm_dir, teacher)
    spec = json.loads((teacher / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab["rome"], vocab["london"] = vocab["london"], vocab["rome"]
    (teacher / "tokenizer.json").write_text(json.dumps(spec))
    cfg = _cfg(method="kd", kd_teacher="topk", topk=1)
    with pytest.raises(SkeditError, match="another vocabulary"):
        train_student(tiny_lm_dir, EXAMPLES, cfg, tmp_path / "model", teacher_path=teacher)
    # the same tokenizer passes that check (and trains)
    from skedit.sft.kd import encode_example
    from skedit.sft.modelops import load_model

    tok = load_model(tiny_lm_dir, device="cpu")[1]
    ok = [
        r.model_copy(
            update={"teacher_topk": [[(5, -0.1)]] * len(encode_example(tok, r)["completion_ids"])}
        )
        for r in EXAMPLES
    ]
    shutil.copytree(tiny_lm_dir, tmp_path / "same")
    res = train_student(tiny_lm_dir, ok, cfg, tmp_path / "model", teacher_path=tmp_path / "same")
    assert res.model_dir is not None
