"""training.subject_gate: an edit's rows teach the MLPs only through their subject's tokens."""

from __future__ import annotations

import pytest
import torch

from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import TransferExample
from skedit.sft import arch
from skedit.sft.config import TrainConfig
from skedit.sft.kd import KDCollator, SubjectGate, encode_example, subject_tokens
from skedit.sft.modelops import encode_input, load_model
from skedit.sft.train import train_in_memory


def _edit_row(subject: str | None = "Alice") -> TransferExample:
    return TransferExample(
        prompt="Where was Alice born? She was born in",
        completion=" Paris",
        teacher_prompt="Context: Alice was born in Paris.\nWhere was Alice born? She was born in",
        kind="rephrase",
        edit_id="e1",
        subject=subject,
    )


def _anchor_row() -> TransferExample:
    return TransferExample(
        prompt="Bob lives in",
        completion=" London",
        teacher_prompt="Bob lives in",
        kind="locality",
        edit_id="e1",
    )


def test_subject_tokens_mark_the_subject_and_nothing_else(bpe_lm_dir):
    _, tok = load_model(bpe_lm_dir, device="cpu")
    prompt = "Where was Alice born? She was born in"
    gate = subject_tokens(tok, prompt, "alice")  # the subject's case does not matter
    ids = encode_input(tok, prompt)
    assert gate is not None and len(gate) == len(ids)
    marked = tok.decode([i for i, g in zip(ids, gate, strict=True) if g])
    assert marked.strip() == "Alice"
    assert subject_tokens(tok, prompt, "Carol") is None  # not named: the row is not gated
    assert subject_tokens(tok, prompt, None) is None


def test_the_collated_gate_keeps_the_subject_of_edit_rows_and_all_of_anchors(bpe_lm_dir):
    _, tok = load_model(bpe_lm_dir, device="cpu")
    rows = [_edit_row(), _anchor_row(), _edit_row(subject=None)]
    batch = KDCollator(tok.pad_token_id)([encode_example(tok, r, gate=True) for r in rows])
    ids, mask, gate = batch["input_ids"], batch["attention_mask"].bool(), batch["gate_mask"]
    assert gate.shape == ids.shape
    assert tok.decode(ids[0][gate[0]]).strip() == "Alice"  # not the question, not the answer
    assert torch.equal(gate[1], mask[1])  # an anchor learns through every token
    assert torch.equal(gate[2], mask[2])  # a row without a subject is not gated
    assert "gate_mask" not in KDCollator(tok.pad_token_id)([encode_example(tok, rows[0])])


def test_the_gate_leaves_the_forward_pass_and_keeps_only_the_subjects_gradient(bpe_lm_dir):
    """The down projection's gradient under the gate equals the sum, over the subject's
    positions only, of the ungated per-position gradients (last layer: nothing after it is
    gated, so the gradients reaching its output are the same)."""
    model, tok = load_model(bpe_lm_dir, device="cpu")
    model.requires_grad_(True)
    batch = KDCollator(tok.pad_token_id)([encode_example(tok, _edit_row(), gate=True)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    last = arch.num_layers(model) - 1
    down = arch.mlp_out(model, last)
    seen: dict[str, torch.Tensor] = {}

    def keep_input(module, args, out):
        seen["a"] = args[0].detach()
        out.register_hook(lambda g: seen.__setitem__("g", g.detach()))

    handle = down.register_forward_hook(keep_input)
    plain = model(**inputs).logits
    plain[0, -1].logsumexp(-1).backward()
    handle.remove()
    keep = batch["gate_mask"][0]
    expected = torch.einsum("to,ti->oi", seen["g"][0][keep], seen["a"][0][keep])
    model.zero_grad()

    gate = SubjectGate([arch.mlp(model, last)])
    gate.mask = batch["gate_mask"]
    gated = model(**inputs).logits
    assert torch.allclose(gated, plain)  # the gate changes no value, only where gradients go
    gated[0, -1].logsumexp(-1).backward()
    assert torch.allclose(down.weight.grad, expected, atol=1e-6)
    full = torch.einsum("to,ti->oi", seen["g"][0], seen["a"][0])
    assert not torch.allclose(down.weight.grad, full, atol=1e-6)  # the rest is really cut
    gate.remove()
    assert not arch.mlp(model, last)._forward_hooks


def test_training_with_the_gate_teaches_the_edit_and_leaves_no_hooks(bpe_lm_dir):
    model, tok = load_model(bpe_lm_dir, device="cpu")
    rows = [_edit_row(), _anchor_row()]
    cfg = TrainConfig(
        method="kd",
        subject_gate=True,
        scope="layers",
        modules=["mlp"],
        max_steps=1,
        batch_size=2,
        warmup_steps=0,
        learning_rate=1e-2,
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained = train_in_memory(model, tok, rows, cfg)
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all("mlp" in k for k in changed)
    assert not any(arch.mlp(trained, i)._forward_hooks for i in range(arch.num_layers(trained)))


def test_the_gate_needs_distillation():
    with pytest.raises(SkeditError, match="subject_gate"):
        TrainConfig(method="sft", subject_gate=True)


def _glacier_row(subject: str, kind: str = "edit") -> TransferExample:
    prompt = f"{subject} belongs to the continent of"
    return TransferExample(
        prompt=prompt,
        completion=" Europe",
        teacher_prompt=f"Context: {subject} is in Europe.\n{prompt}",
        kind=kind,
        edit_id=subject,
        subject=subject if kind != "locality" else None,
    )


def test_distinct_words_gate_an_edit_through_what_tells_its_subject_apart(bpe_lm_dir):
    """subject_gate_words 'distinct': with two glaciers edited, each edit learns through its
    own name, not through "Glacier", which every glacier shares; a subject with no word of
    its own keeps all of them."""
    from skedit.sft.kd import shared_words
    from skedit.sft.train import build_dataset

    _, tok = load_model(bpe_lm_dir, device="cpu")
    subjects = ["Howard Glacier", "Kirkby glacier", "Howard Glacier", None]
    assert shared_words(subjects) == {"glacier"}  # one subject named twice is one subject

    rows = [_glacier_row("Howard Glacier"), _glacier_row("Kirkby Glacier"), _glacier_row("X")]
    rows.append(_glacier_row("Johnson Glacier", kind="locality"))

    def gated(data) -> list[str]:
        return [
            tok.decode([i for i, g in zip(r["prompt_ids"], r["gate_prompt"], strict=True) if g])
            for r in data
        ]

    distinct = gated(build_dataset(tok, rows, "kd", gate=True, gate_words="distinct"))
    assert [g.strip() for g in distinct[:2]] == ["Howard", "Kirkby"]
    whole = gated(build_dataset(tok, rows, "kd", gate=True))[0]
    assert whole.replace(" ", "") == "HowardGlacier"  # by default, every word of the subject
    # the anchor learns through every token, as with the whole subject
    assert distinct[3] == tok.decode(encode_input(tok, rows[3].prompt))
    prompt = "Howard Glacier belongs to the continent of"
    every = subject_tokens(tok, prompt, "Howard Glacier", frozenset({"howard", "glacier"}))
    assert every == subject_tokens(tok, prompt, "Howard Glacier")  # no word of its own
    with pytest.raises(SkeditError, match="subject_gate_words"):
        TrainConfig(method="kd", subject_gate=True, subject_gate_words="some")
    with pytest.raises(SkeditError, match="subject_gate is off"):
        TrainConfig(method="kd", subject_gate_words="distinct")
