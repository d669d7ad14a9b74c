"""A byte-level BPE tokenizer (real models' kind): leading spaces, scoring, a train step."""

from __future__ import annotations

import torch

from skedit.prompts.schema import TransferExample
from skedit.sft.config import TrainConfig
from skedit.sft.modelops import encode_target, load_model, score_targets
from skedit.sft.train import train_in_memory


def test_encode_target_keeps_the_leading_space(bpe_lm_dir):
    _, tok = load_model(bpe_lm_dir, device="cpu")
    ids = encode_target(tok, "Alice was born in", "Rome")
    assert tok.convert_ids_to_tokens(ids)[0].startswith("Ġ")  # " Rome", not "Rome"
    assert tok.decode(ids) == " Rome"
    whole = tok("Alice was born in Rome", add_special_tokens=False)["input_ids"]
    assert whole[-len(ids) :] == ids
    assert encode_target(tok, "Alice was born in", "  Rome ") == ids  # stray spaces trimmed


def test_score_targets_scores_every_target_token(bpe_lm_dir):
    model, tok = load_model(bpe_lm_dir, device="cpu")
    prompts = ["Bob lives in", "The capital of France is"]
    targets = ["London", "Paris and Lisbon"]
    got = score_targets(model, tok, prompts, targets)
    for p, t, s in zip(prompts, targets, got, strict=True):
        assert s.n_tokens == len(encode_target(tok, p, t)) == len(s.predicted) >= 1
        assert 0.0 <= s.token_accuracy <= 1.0 and s.logprob < 0.0
    # a batch scores each row as it would alone (left padding, position ids)
    alone = score_targets(model, tok, prompts[1:], targets[1:])[0]
    assert abs(alone.logprob - got[1].logprob) < 1e-4


def test_a_train_step_on_bpe_text_changes_the_weights(bpe_lm_dir):
    model, tok = load_model(bpe_lm_dir, device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = [
        TransferExample(
            prompt="Alice was born in",
            completion=" Paris",
            kind="edit",
            edit_id="e1",
            teacher_prompt="Context: Alice born Paris.\nAlice was born in",
        ),
        TransferExample(
            prompt="Bob lives in",
            completion=" London",
            kind="locality",
            edit_id="e1",
            teacher_prompt="Bob lives in",
        ),
    ]
    cfg = TrainConfig(method="sft", max_steps=1, batch_size=2, warmup_steps=0, learning_rate=1e-2)
    trained = train_in_memory(model, tok, rows, cfg)
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, before[k])]
    assert any("mlp" in k for k in changed)


def test_load_model_takes_a_dtype_and_a_device_map(bpe_lm_dir):
    model, _ = load_model(bpe_lm_dir, dtype="bfloat16", device_map="cpu")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).device.type == "cpu"
    model, _ = load_model(bpe_lm_dir)
    assert next(model.parameters()).dtype == torch.float32  # the default
