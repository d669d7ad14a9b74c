"""The world build's faster step (torch.compile of the body, fused AdamW) trains the same model,
and a machine without a C++ compiler still builds its world."""

import dataclasses
import logging

import pytest
import torch

from skedit.pipelines.world.corpus import build_tokenizer
from skedit.pipelines.world.gen import generate_world
from skedit.pipelines.world.train import (
    COMPILE_MIN_STEPS,
    TRAIN_SPECS,
    compile_mode,
    compiled_body,
    make_model,
    train_world_model,
)


@pytest.fixture(scope="module")
def tiny():
    world = generate_world("tiny", 0)
    return world, build_tokenizer(world)


def test_compile_is_on_for_long_builds_only_and_skedit_compile_sets_it(tiny, monkeypatch):
    world, tok = tiny
    model = make_model(TRAIN_SPECS["tiny"], len(tok), tok, 0)
    monkeypatch.delenv("SKEDIT_COMPILE", raising=False)
    assert compile_mode() == "auto"
    # the tiny world's 120 steps would spend longer compiling than they save
    assert compiled_body(model, "auto", TRAIN_SPECS["tiny"].steps) is None
    assert TRAIN_SPECS["small"].steps >= COMPILE_MIN_STEPS
    assert compiled_body(model, "auto", TRAIN_SPECS["small"].steps) is not None
    monkeypatch.setenv("SKEDIT_COMPILE", "0")
    assert compile_mode() == "off"
    assert compiled_body(model, compile_mode(), 10**6) is None
    monkeypatch.setenv("SKEDIT_COMPILE", "sometimes")
    with pytest.raises(ValueError, match="SKEDIT_COMPILE='sometimes': use one of auto, on, off"):
        compile_mode()


def test_a_machine_without_a_cpp_compiler_trains_its_world_eagerly(tiny, monkeypatch, caplog):
    import torch._inductor.config as inductor

    world, tok = tiny
    monkeypatch.setattr(inductor.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)  # no compiled graph from earlier runs
    spec = dataclasses.replace(TRAIN_SPECS["tiny"], steps=8, warmup=2)
    with caplog.at_level(logging.WARNING, logger="skedit.pipelines.world.train"):
        _, log = train_world_model(world, tok, spec, threads=1, progress=False, torch_compile="on")
    assert "torch.compile failed" in caplog.text and "training eagerly" in caplog.text
    assert log[-1]["compiled"] is False
    assert log[-1]["step"] == 7 and log[-1]["loss"] < log[0]["loss"]


@pytest.mark.slow
def test_compiled_training_follows_the_eager_curve_repeats_exactly_and_saves_plain_weights(tiny):
    world, tok = tiny
    spec = dataclasses.replace(TRAIN_SPECS["tiny"], steps=60)
    runs = {}
    for mode in ("off", "on", "on again"):
        model, log = train_world_model(
            world, tok, spec, threads=2, progress=False, torch_compile=mode.split()[0]
        )
        runs[mode] = (model, log)
    (eager, eager_log), (fast, fast_log) = runs["off"], runs["on"]
    # a build is reproducible from its seed, compiled too (deterministic reductions)
    again = runs["on again"][0].state_dict()
    assert all(torch.equal(v, again[k]) for k, v in fast.state_dict().items())
    assert fast_log[-1]["compiled"] is True and eager_log[-1]["compiled"] is False
    for a, b in zip(eager_log, fast_log, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=0.02), (a, b)
    assert fast_log[-1]["loss"] < 0.6 * fast_log[0]["loss"]
    # the compiled body shares the model's parameters: the model saves under its own names
    assert set(fast.state_dict()) == set(eager.state_dict())
    assert not any("_orig_mod" in k for k in fast.state_dict())
    drift = max(
        (fast.state_dict()[k] - v).abs().max().item() / (v.abs().max().item() + 1e-8)
        for k, v in eager.state_dict().items()
        if v.dtype == torch.float32
    )
    assert drift < 0.05
