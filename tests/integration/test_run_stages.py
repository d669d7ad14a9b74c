"""`skedit run` and `skedit sft` share one teacher stage and one train stage: a configured
teacher reaches KD training, and every teacher setting is part of the teacher's cache key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from skedit.pipelines.run.config import parse_config
from skedit.pipelines.run.orchestrate import run_pipeline


def _edits(tmp: Path, tiny_world, n: int = 4) -> Path:
    lines = Path(tiny_world.benchmark["test"]).read_text().splitlines()[:n]
    path = tmp / "edits.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(model: Path, teacher: Path | None = None, **training):
    return parse_config(
        {
            "model": str(model),
            "teacher": str(teacher) if teacher else None,
            "agents": {"min_edit_accuracy": 0.0, "min_locality": 0.0, "max_facts": 4},
            "training": {"method": "kd", "max_steps": 1, "batch_size": 4, **training},
            "evaluation": {"baselines": []},
        }
    )


@pytest.fixture
def recorded_training(monkeypatch):
    """train_student and evaluate_run replaced by recorders (this test is about the wiring)."""
    calls: list[dict] = []

    def fake_train(model_path, examples, config, out_dir, **kwargs):
        calls.append({"model": str(model_path), **kwargs})
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "model.safetensors").write_bytes(b"")

        class Result:
            model_dir, train_seconds, trainable_parameters, steps = out_dir, 0.0, 0, 1

        return Result()

    monkeypatch.setattr("skedit.sft.train.train_student", fake_train)
    monkeypatch.setattr("skedit.pipelines.eval.harness.evaluate_run", lambda *a, **k: {})
    return calls


def test_run_gives_kd_the_configured_teacher(tmp_path, tiny_world, recorded_training):
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_world.model_dir, teacher)  # another path, the same weights
    cfg = _config(tiny_world.model_dir, teacher)
    outcome = run_pipeline(
        tmp_path / "run",
        edits_path=_edits(tmp_path, tiny_world),
        config=cfg,
        auto_approve=True,
        progress=False,
    )
    assert outcome.status == "done"
    [call] = recorded_training
    assert call["teacher_path"] == str(teacher)  # (was None: KD copied the base model)
    assert call["manifest"]["teacher"] == str(teacher)


def test_changing_teacher_max_new_tokens_reruns_the_teacher(
    tmp_path, tiny_world, recorded_training, capsys
):
    edits, run = _edits(tmp_path, tiny_world), tmp_path / "run"
    for n in (4, 4, 6):
        cfg = _config(tiny_world.model_dir, teacher_max_new_tokens=n)
        run_pipeline(run, edits_path=edits, config=cfg, auto_approve=True, progress=False)
    log = capsys.readouterr().err
    skipped = log.count("teacher: done before, skipped")
    assert skipped == 1, log  # the second run reused it; the third (6 tokens) ran it again
    assert json.loads((run / "stages.json").read_text())["teacher"]["done"]
