"""Causal tracing: restored states bring the clean answer back; the CLI writes a plot."""

from __future__ import annotations

import json

import pytest
import torch

from skedit.pipelines.cli import main
from skedit.pipelines.editors.tracing import summarise, trace_edit
from skedit.prompts.schema import Edit
from skedit.sft.modelops import load_model

EDIT = Edit(subject="alice", prompt="where was alice born", target_new="rome")


@pytest.fixture(scope="module")
def llama(tiny_lm_dir):
    torch.set_num_threads(1)
    return load_model(tiny_lm_dir, device="cpu")


def test_restoring_the_whole_corrupted_state_gives_the_clean_probability(llama):
    model, tok = llama
    tr = trace_edit(model, tok, EDIT, samples=4, noise=20.0)
    n_tokens = len(tr.tokens)
    assert tr.subject_first == tr.subject_last  # "alice" is one token
    for kind in ("hidden", "mlp"):
        assert len(tr.effects[kind]) == 2 and len(tr.effects[kind][0]) == n_tokens
    # the last layer's output at the last token carries everything the answer depends on
    assert tr.effects["hidden"][1][-1] == pytest.approx(tr.p_clean, abs=1e-5)
    # states before the subject never saw the noise: restoring them changes nothing
    for layer in (0, 1):
        assert tr.effects["hidden"][layer][0] == pytest.approx(tr.p_corrupt, abs=1e-6)
    assert tr.p_corrupt != pytest.approx(tr.p_clean, abs=1e-4)  # the noise did something
    s = summarise([tr])
    assert s["rome_layer"] == 0  # the last layer is never suggested


def test_trace_command_writes_plot_and_json(tiny_lm_dir, tmp_path, capsys):
    edits = tmp_path / "edits.jsonl"
    edits.write_text(
        EDIT.model_dump_json()
        + "\n"
        + Edit(subject="bob", prompt="bob lives in", target_new="paris").model_dump_json()
        + "\n"
    )
    out = tmp_path / "trace"
    code = main(["trace", str(tiny_lm_dir), str(edits), "--out", str(out), "--samples", "2",
                 "--json"])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed["summary"]) == {"hidden", "mlp"}
    assert printed["summary"]["mlp"]["prompts"] == 2
    png = (out / "trace.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert len(json.loads((out / "trace.json").read_text())["traces"]) == 2


def test_trace_command_reports_missing_files(tiny_lm_dir, tmp_path, capsys):
    assert main(["trace", str(tiny_lm_dir), str(tmp_path / "none.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
