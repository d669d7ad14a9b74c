"""`skedit sft DIR` end to end on a tiny model: transfer set, training, reuse, errors, launch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from skedit.pipelines.cli import main
from skedit.prompts.io import read_jsonl, write_jsonl
from skedit.prompts.schema import DensePrompt, Probe, TransferExample

PROBES = [
    Probe(prompt="alice was born in", answers=["rome"], kind="edit", edit_id="e1"),
    Probe(prompt="where was alice born ?", answers=["rome"], kind="rephrase", edit_id="e1"),
    Probe(prompt="the country of alice is", answers=["italy"], kind="portability", edit_id="e1"),
    Probe(
        prompt="bob lives in",
        answers=["london"],
        kind="locality",
        edit_id="e1",
        expected="london .",
    ),
    Probe(prompt="carol works for", answers=["x"], kind="locality", edit_id="e1"),
    Probe(prompt="dave was born in", answers=["paris"], kind="edit", edit_id="e2"),
]


def make_run(run: Path, model: Path | str, *, status: str = "approved") -> Path:
    run.mkdir(parents=True, exist_ok=True)
    training = {"max_steps": 2, "batch_size": 4, "save_steps": 1, "threads": 1}
    (run / "config.yaml").write_text(yaml.safe_dump({"model": str(model), "training": training}))
    write_jsonl(run / "probes.jsonl", PROBES)
    prompts = [
        DensePrompt(edit_ids=["e1"], text="alice was born in rome .", status=status),
        DensePrompt(edit_ids=["e2"], text="dave was born in paris .", status="rejected"),
    ]
    write_jsonl(run / "prompts" / "prompts.jsonl", prompts)
    return run


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_sft_builds_transfer_set_trains_and_reports(tiny_lm_dir, tmp_path, capsys):
    run = make_run(tmp_path / "run", tiny_lm_dir)
    assert main(["sft", str(run), "--method", "kd", "--json"]) == 0
    out = _json_out(capsys)
    assert set(out) >= {
        "model_dir",
        "method",
        "teacher_seconds",
        "train_seconds",
        "peak_rss_mb",
        "trainable_parameters",
    }
    assert out["method"] == "kd" and out["peak_rss_mb"] > 0 and out["trainable_parameters"] > 0
    rows = read_jsonl(run / "transfer.jsonl", TransferExample)
    # only the approved prompt's edit; every completion is " " + an answer
    assert {r.edit_id for r in rows} == {"e1"}
    assert sorted(r.kind for r in rows) == [
        "edit",
        "locality",
        "locality",
        "portability",
        "rephrase",
    ]
    assert all(r.completion.startswith(" ") and r.completion.strip() for r in rows)
    taught = [r for r in rows if r.kind != "locality"]
    assert all(r.teacher_prompt.startswith("Context: alice was born in rome .") for r in taught)
    anchor = next(r for r in rows if r.prompt == "bob lives in")
    assert anchor.completion == " london ." and anchor.teacher_prompt == anchor.prompt
    model_dir = Path(out["model_dir"])
    for name in (
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "manifest.json",
        "loss.png",
        "training_log.json",
    ):
        assert (model_dir / name).is_file(), name
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["edit_ids"] == ["e1"] and len(manifest["prompt_ids"]) == 1

    # a second run refuses to overwrite; with --force it reuses the unchanged transfer set
    assert main(["sft", str(run)]) == 2
    assert "already" in capsys.readouterr().err
    assert main(["sft", str(run), "--force", "--method", "sft", "--json"]) == 0
    again = _json_out(capsys)
    assert again["transfer_reused"] is True and again["method"] == "sft"

    # a changed prompt invalidates it
    prompts = read_jsonl(run / "prompts" / "prompts.jsonl", DensePrompt)
    prompts[0].text = "alice was born in paris ."
    write_jsonl(run / "prompts" / "prompts.jsonl", prompts)
    assert main(["sft", str(run), "--force", "--json"]) == 0
    assert _json_out(capsys)["transfer_reused"] is False


def test_second_batch_on_the_student_grows_the_manifest(tiny_lm_dir, tmp_path, capsys):
    one = make_run(tmp_path / "one", tiny_lm_dir)
    assert main(["sft", str(one), "--json"]) == 0
    capsys.readouterr()
    two = make_run(tmp_path / "two", one / "model")
    prompts = [DensePrompt(edit_ids=["e2"], text="dave was born in paris .", status="approved")]
    write_jsonl(two / "prompts" / "prompts.jsonl", prompts)
    # the first batch's rows are replayed with the second (replay 1.0 by default)
    assert main(["sft", str(two), "--dry-run", "--json"]) == 0
    first_rows = read_jsonl(one / "model" / "transfer_rows.jsonl", TransferExample)
    assert json.loads(capsys.readouterr().out)["replayed_rows"] == len(first_rows) > 0
    # the first batch stored no top-k: its replayed rows cannot be distilled from one
    assert main(["sft", str(two), "--kd-topk", "4"]) == 2
    err = capsys.readouterr().err
    assert "transfer_rows.jsonl" in err and "--kd-topk 0" in err
    assert not (two / "transfer.jsonl").exists()  # refused before the teacher ran
    assert main(["sft", str(two), "--lora", "--json"]) == 0
    manifest = json.loads((two / "model" / "manifest.json").read_text())
    assert manifest["edit_ids"] == ["e1", "e2"]
    assert manifest["base_model"] == str(tiny_lm_dir)
    assert [b["scope"] for b in manifest["batches"]] == ["full", "lora"]
    carried = read_jsonl(two / "model" / "transfer_rows.jsonl", TransferExample)
    assert {r.edit_id for r in carried if r.kind == "edit"} == {"e1", "e2"}
    assert carried[: len(first_rows)] == first_rows


def test_replay_adds_a_seeded_share_of_earlier_rows():
    from skedit.sft.train import with_replay

    def row(i):
        return TransferExample(
            prompt=f"q{i}", completion=" a.", teacher_prompt=f"c q{i}", kind="edit", edit_id=f"e{i}"
        )

    now, earlier = [row(0)], [row(i) for i in range(1, 11)]
    assert with_replay(now, earlier, 0.0) == now
    assert with_replay(now, earlier, 1.0) == now + earlier
    half = with_replay(now, earlier, 0.5, seed=3)
    assert len(half) == 6 and half[0] == now[0]
    assert {r.prompt for r in half[1:]} <= {r.prompt for r in earlier}
    assert half == with_replay(now, earlier, 0.5, seed=3)


def test_dry_run_shows_the_plan_and_trains_nothing(tiny_lm_dir, tmp_path, capsys):
    run = make_run(tmp_path / "run", tiny_lm_dir)
    assert main(["sft", str(run), "--dry-run", "--layers", "1", "--modules", "mlp", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["examples_by_kind"] == {"edit": 1, "rephrase": 1, "portability": 1, "locality": 2}
    assert plan["scope"] == "layers" and plan["steps"] == 2
    assert 0 < plan["trainable_parameters"] < plan["total_parameters"]
    assert not (run / "model").exists() and not (run / "transfer.jsonl").exists()
    # what the KD loss will read, and whether it holds a second model in memory
    assert plan["teacher_in_training"].startswith("live: a frozen copy")
    assert main(["sft", str(run), "--dry-run", "--kd-topk", "8", "--json"]) == 0
    assert "top-8 stored" in json.loads(capsys.readouterr().out)["teacher_in_training"]


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda run: (run / "config.yaml").unlink(), "config.yaml"),
        (lambda run: (run / "config.yaml").write_text("training: {}\n"), "model"),
        (lambda run: (run / "probes.jsonl").unlink(), "probes"),
        (
            lambda run: (run / "config.yaml").write_text("model: x\ntraining: {lr: 1}\n"),
            "unknown training option",
        ),
    ],
)
def test_bad_run_dirs_are_reported_without_traceback(tmp_path, capsys, breakage, message):
    run = make_run(tmp_path / "run", "unused")
    breakage(run)
    assert main(["sft", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_no_approved_prompt_says_to_review(tmp_path, capsys):
    run = make_run(tmp_path / "run", "unused", status="draft")
    assert main(["sft", str(run)]) == 2
    assert "skedit review" in capsys.readouterr().err


@pytest.mark.slow
def test_accelerate_launch_with_one_cpu_process(tiny_lm_dir, tmp_path):
    run = make_run(tmp_path / "run", tiny_lm_dir)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "skedit.pipelines.cli",
            "sft",
            str(run),
            "--launcher",
            "accelerate",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["steps"] == 2 and Path(out["model_dir"], "model.safetensors").is_file()
    assert json.loads((run / "model" / "train_result.json").read_text())["steps"] == 2


def test_rerun_after_an_interruption_resumes_the_same_job(tiny_lm_dir, tmp_path, capsys):
    import shutil

    from transformers import TrainerCallback

    from skedit.sft.config import TrainConfig
    from skedit.sft.train import train_student
    from skedit.sft.transfer import read_transfer_set

    run = make_run(tmp_path / "run", tiny_lm_dir)
    assert main(["sft", str(run), "--json"]) == 0
    capsys.readouterr()
    job = json.loads((run / "sft_job.json").read_text())
    shutil.rmtree(run / "model")

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the same job, killed after checkpoint-1
        train_student(
            job["model"],
            read_transfer_set(run),
            TrainConfig(**job["training"]),
            run / "model",
            callbacks=[Crash()],
        )
    assert main(["sft", str(run)]) == 0
    assert "resuming" in capsys.readouterr().err
    assert (run / "model" / "model.safetensors").is_file()
    assert not (run / "model" / "checkpoints").exists()
    # --resume on a finished student has nothing to do
    assert main(["sft", str(run), "--resume"]) == 0
    assert "nothing to resume" in capsys.readouterr().err


def test_kd_from_the_stored_top_k(tiny_lm_dir, tmp_path, capsys):
    """--kd-topk K: the transfer set stores the teacher's K best tokens and training reads
    them instead of running the teacher."""
    run = make_run(tmp_path / "run", tiny_lm_dir)
    assert main(["sft", str(run), "--kd-topk", "4", "--json"]) == 0
    out = _json_out(capsys)
    rows = read_jsonl(run / "transfer.jsonl", TransferExample)
    assert rows and all(r.teacher_topk and len(r.teacher_topk[0]) == 4 for r in rows)
    config = json.loads((Path(out["model_dir"]) / "train_config.json").read_text())
    assert config["kd_teacher"] == "topk" and config["topk"] == 4
    assert main(["sft", str(run), "--force", "--kd-topk", "4", "--method", "sft"]) == 2
    assert "--kd-topk" in capsys.readouterr().err
    # --kd-topk 0: back to the live teacher
    assert main(["sft", str(run), "--force", "--kd-topk", "0", "--json"]) == 0
    live = json.loads((Path(_json_out(capsys)["model_dir"]) / "train_config.json").read_text())
    assert live["kd_teacher"] == "live"
