"""`skedit run` end to end on the tiny world: review pause, resume, kill and resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

SKEDIT = [sys.executable, "-m", "skedit.pipelines.cli"]


def _config(tmp: Path, model_dir: Path) -> Path:
    cfg = {
        "model": str(model_dir),
        # the tiny world model is a weak teacher: let every prompt pass so each stage has work
        "agents": {"min_edit_accuracy": 0.0, "min_locality": 0.0, "max_facts": 4},
        "training": {
            "max_steps": 24,
            "save_steps": 4,
            "batch_size": 8,
            "threads": 1,
            "teacher_batch_size": 1,
        },  # slow enough to be killed mid-stage
        "evaluation": {"baselines": ["base"]},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _edits(tmp: Path, tiny_world, n: int = 12) -> Path:
    lines = Path(tiny_world.benchmark["test"]).read_text().splitlines()[:n]
    path = tmp / "edits.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _stages(run: Path) -> dict:
    try:
        return json.loads((run / "stages.json").read_text())
    except (OSError, ValueError):
        return {}


def _kill_during(cmd: list[str], run: Path, stage: str, ready=lambda run: True) -> None:
    """Start ``cmd``, SIGKILL it while ``stage`` is running (and ``ready``), check it was."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            rec = _stages(run).get(stage, {})
            if rec.get("started") and not rec.get("done") and ready(run):
                os.kill(proc.pid, signal.SIGKILL)
                break
            if proc.poll() is not None:
                pytest.fail(f"run ended before it could be killed during {stage}")
            time.sleep(0.01)
        else:
            pytest.fail(f"stage {stage} never started")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert not _stages(run).get(stage, {}).get("done"), f"{stage} finished before the kill"


def _methods(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["methods"]


def test_killed_at_every_stage_and_resumed_gives_the_same_metrics(tmp_path, tiny_world):
    cfg = _config(tmp_path, tiny_world.model_dir)
    edits = _edits(tmp_path, tiny_world, n=8)
    clean = tmp_path / "clean"
    subprocess.run(
        [*SKEDIT, "run", str(edits), "--run", str(clean), "--config", str(cfg), "--auto-approve"],
        check=True,
        capture_output=True,
    )

    run = tmp_path / "killed"
    first = [*SKEDIT, "run", str(edits), "--run", str(run), "--config", str(cfg), "--auto-approve"]
    resume = [*SKEDIT, "run", "--resume", str(run)]
    _kill_during(first, run, "agents", ready=lambda r: (r / "agents.sqlite").exists())
    _kill_during(resume, run, "teacher")
    _kill_during(
        resume,
        run,
        "train",
        ready=lambda r: any((r / "model" / "checkpoints").glob("checkpoint-*")),
    )
    done = subprocess.run(
        [*SKEDIT, "run", "--resume", str(run), "--json"], check=True, capture_output=True, text=True
    )
    outcome = json.loads(done.stdout)  # stdout holds the JSON object alone
    assert outcome["status"] == "done"
    assert outcome["stages"]["agents"]["done"] and outcome["stages"]["eval"]["done"]

    a, b = _methods(clean), _methods(run)
    assert set(a) == set(b) == {"skedit", "base"}
    for method in a:
        for metric in ("edit_success", "paraphrase", "portability", "locality"):
            assert b[method][metric]["mean"] == pytest.approx(a[method][metric]["mean"], abs=1e-9)
    assert not (run / ".skedit.lock").exists()


def test_readme_walkthrough_own_facts_stops_at_review_and_resumes(tmp_path, tiny_world):
    """README walkthrough 1, with the tiny world model as PATH/TO/MODEL."""
    readme = (
        next(d for d in Path(__file__).resolve().parents if (d / "pyproject.toml").is_file())
        / "README.md"
    ).read_text(encoding="utf-8")
    csv = re.search(r"cat > facts.csv <<'CSV'\n(.*?)CSV\n", readme, flags=re.S).group(1)
    edits = tmp_path / "facts.csv"
    edits.write_text(csv)
    inspect = subprocess.run([*SKEDIT, "data", "inspect", str(edits)], capture_output=True)
    assert inspect.returncode == 0, inspect.stderr
    cfg = _config(tmp_path, tiny_world.model_dir)
    run = tmp_path / "run"
    out = subprocess.run(
        [*SKEDIT, "run", str(edits), "--run", str(run), "--config", str(cfg)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert f"skedit review {run} approve --all" in out
    assert f"skedit run --resume {run}" in out
    assert not (run / "transfer.jsonl").exists()
    # resuming before review changes nothing and says the same
    again = subprocess.run(
        [*SKEDIT, "run", "--resume", str(run)], check=True, capture_output=True, text=True
    ).stdout
    assert "skedit review" in again and not (run / "transfer.jsonl").exists()

    review = subprocess.run(
        [*SKEDIT, "review", str(run), "approve", "--all"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert f"Next: skedit run --resume {run}" in review.stdout  # what `skedit run` said too
    subprocess.run([*SKEDIT, "run", "--resume", str(run)], check=True, capture_output=True)
    assert (run / "metrics.json").exists() and (run / "report.html").exists()
    stages = _stages(run)
    assert all(stages[s]["done"] for s in ("agents", "teacher", "train", "eval"))

    # a rerun skips every finished stage
    rerun = subprocess.run(
        [*SKEDIT, "run", "--resume", str(run)], check=True, capture_output=True, text=True
    )
    assert rerun.stderr.count("done before, skipped") == 4


def test_bad_config_key_is_named_before_any_work(tmp_path, tiny_world):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("training:\n  max_step: 3\n")
    edits = _edits(tmp_path, tiny_world, n=2)
    res = subprocess.run(
        [*SKEDIT, "run", str(edits), "--run", str(tmp_path / "r"), "--config", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert "training.max_step" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()


def test_undecodable_edits_file_is_a_clear_error_and_keeps_the_run_resumable(tmp_path, tiny_lm_dir):
    bad = tmp_path / "facts.csv"
    bad.write_bytes(b"subject,prompt,target_new\nA\xff,A\xff lives in,B\n")
    run = tmp_path / "run"
    res = subprocess.run(
        [*SKEDIT, "run", str(bad), "--run", str(run), "--model", str(tiny_lm_dir)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    # the bad byte is on line 2 (the header is line 1), 27 bytes in
    assert "not UTF-8" in res.stderr and "offset 27 (line 2)" in res.stderr
    assert "Traceback" not in res.stderr
    assert not _stages(run)["agents"].get("done")
    assert not (run / ".skedit.lock").exists()


def test_the_same_command_again_resumes_on_the_default_model(tmp_path, tiny_world):
    """`skedit run EDITS --run DIR` without --model, run twice: the agents stage has saved the
    model it used in config.yaml, and the second run must see the same model, not a new one."""
    from skedit.pipelines.run.orchestrate import prepare_run
    from skedit.pipelines.run.rundir import RunDir

    edits = _edits(tmp_path, tiny_world, n=2)
    world = str(tiny_world.model_dir)
    run = RunDir(tmp_path / "run")
    with run:
        first = prepare_run(
            run, edits_path=edits, config=None, resume=False, resolve=lambda c: world
        )
        assert first.model == world
        run.mark("agents", done=True, input_hash="h")
        again = prepare_run(
            run, edits_path=edits, config=None, resume=False, resolve=lambda c: world
        )
        assert again.model == world and run.is_done("agents", "h")
        # another default model (a rebuilt world) is another model: the agents start over
        prepare_run(
            run,
            edits_path=edits,
            config=None,
            resume=False,
            resolve=lambda c: str(tmp_path / "other-world"),
        )
        assert not run.is_done("agents", "h")


@pytest.mark.parametrize("model", ["PATH/TO/MODEL", "no-such-folder/", "{here}"])
def test_a_wrong_model_path_is_a_clear_error_before_any_work(tmp_path, tiny_world, model):
    edits = _edits(tmp_path, tiny_world, n=2)
    model = model.format(here=tmp_path)  # a folder, but without config.json
    for cmd in (["run", str(edits), "--run"], ["agents", "run", str(edits), "--run"]):
        res = subprocess.run(
            [*SKEDIT, *cmd, str(tmp_path / "r"), "--model", model],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert model in res.stderr and ("not found" in res.stderr or "config.json" in res.stderr)
        assert not (tmp_path / "r").exists()


def test_resume_of_a_folder_that_holds_no_run_names_it_and_creates_nothing(tmp_path):
    typo = tmp_path / "runs" / "my-fatcs"
    res = subprocess.run([*SKEDIT, "run", "--resume", str(typo)], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert str(typo) in res.stderr and "no config.yaml" in res.stderr
    assert not typo.exists() and not typo.parent.exists()


def test_resume_refuses_settings_it_would_ignore(tmp_path):
    res = subprocess.run(
        [*SKEDIT, "run", "--resume", str(tmp_path / "r"), "--model", "other/model"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "--model would be ignored" in res.stderr and "config.yaml" in res.stderr
