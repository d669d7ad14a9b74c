"""Baselines edit the tiny model, train only what they claim to, and fail clearly."""

from __future__ import annotations

import pytest
import torch

from skedit.pipelines.editors import baselines as B
from skedit.pipelines.eval.scoring import evaluate_model
from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import Edit
from skedit.sft.modelops import load_model

EDITS = [
    Edit(subject="alice", prompt="alice lives in", target_new="rome"),
    Edit(subject="bob", prompt="bob works for", target_new="carol dave"),  # two tokens
]


def _probes():
    return [p for e in EDITS for p in e.probes()]


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", ["ft-l", "ft-m"])
def test_ft_edits_and_changes_only_the_chosen_weights(tiny_lm_dir, name):
    torch.set_num_threads(1)
    model, tok = load_model(tiny_lm_dir)
    before = _snapshot(model)
    assert evaluate_model(model, tok, _probes())["edit_success"]["mean"] < 1.0
    hp = {"lr": 3e-2, "steps": 30, "layers": [1], "modules": ["mlp"]}
    if name == "ft-l":
        hp["norm_constraint"] = 0.5
    edited = B.resolve(name)(model, tok, EDITS, hp)
    res = evaluate_model(edited, tok, _probes())
    changed = {n for n, p in edited.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".layers.1.mlp." in n for n in changed)
    if name == "ft-m":  # teacher-forced on every target token: both edits take
        assert res["edit_success"]["mean"] == 1.0
    else:  # last-token objective: first target tokens are learnt, within the ε bound
        assert res["edit_success"]["token_accuracy"]["mean"] >= 0.5
        delta = max((p - before[n]).abs().max().item() for n, p in edited.named_parameters())
        assert delta <= 0.5 + 1e-6


def test_lora_is_merged_and_edits(tiny_lm_dir):
    torch.set_num_threads(1)
    model, tok = load_model(tiny_lm_dir)
    edited = B.resolve("lora")(model, tok, EDITS, {"lr": 1e-2, "steps": 60, "lora_alpha": 64})
    assert not any("lora" in n for n, _ in edited.named_parameters())  # merged, plain model
    assert evaluate_model(edited, tok, _probes())["edit_success"]["mean"] == 1.0


def test_unknown_and_missing_baselines_are_clear_errors(monkeypatch):
    with pytest.raises(SkeditError, match="unknown baseline 'romeo'"):
        B.resolve("romeo")
    monkeypatch.setitem(B.BASELINES, "rome", "skedit.pipelines.no_such_module:apply_rome")
    with pytest.raises(SkeditError, match="not available"):
        B.resolve("rome")
    with pytest.raises(SkeditError, match="unknown baseline hyper-parameter"):
        B.FTHparams.from_any({"learning_rate": 1.0})
    assert B.resolve("base") is B.apply_base
