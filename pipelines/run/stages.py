"""The teacher and train stages: one implementation, used by ``skedit run`` and ``skedit sft``.

- :func:`teacher_stage`: the teacher answers the transfer set; ``DIR/transfer.jsonl`` is reused
  when :func:`teacher_key` (approved prompts, probes, teacher, the teacher's settings) is
  unchanged. Locality anchors without a recorded answer take the *original* base model's own
  answer (the base of an earlier student, else the model itself).
- :func:`train_stage`: writes the job file and trains the student from it, in this process or
  under ``accelerate launch``; the job carries the teacher path (KD reads it) and the manifest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skedit.pipelines.run.rundir import RunDir
from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import DensePrompt, Probe, TransferExample
from skedit.sft.config import TrainConfig


@dataclass
class TeacherResult:
    rows: list[TransferExample]
    seconds: float
    reused: bool


def teacher_key(
    prompts: Sequence[DensePrompt],
    probes: Sequence[Probe],
    config: TrainConfig,
    teacher: str,
    subjects: dict[str, str] | None = None,
) -> str:
    """What the transfer set depends on (the one cache key of the teacher stage)."""
    from skedit.sft.transfer import inputs_fingerprint

    return inputs_fingerprint(prompts, probes, config, teacher, subjects)


def edit_subjects(run: RunDir) -> dict[str, str]:
    """Edit id -> subject, from the run's ``edits.jsonl`` (empty when it has none)."""
    from skedit.prompts.io import read_jsonl
    from skedit.prompts.schema import Edit

    if not run.edits.is_file():
        return {}
    return {e.id: e.subject for e in read_jsonl(run.edits, Edit) if e.subject}


def locality_base(model_path: str) -> str:
    """The model whose own no-prompt answers anchor locality: the original base model."""
    from skedit.sft.train import read_manifest

    return (read_manifest(model_path) or {}).get("base_model") or model_path


def teacher_stage(
    run: RunDir,
    prompts: Sequence[DensePrompt],
    probes: Sequence[Probe],
    config: TrainConfig,
    model_path: str,
    teacher_path: str,
    *,
    reuse: bool = True,
) -> TeacherResult:
    """Reuse ``DIR/transfer.jsonl`` when its inputs are unchanged (and ``reuse``); else run
    the teacher."""
    from skedit.sft.modelops import load_model
    from skedit.sft.transfer import (
        build_transfer_set,
        cached_fingerprint,
        read_transfer_set,
        write_transfer_set,
    )

    subjects = edit_subjects(run)
    key = teacher_key(prompts, probes, config, teacher_path, subjects)
    if reuse and run.transfer.is_file() and cached_fingerprint(run.path) == key:
        return TeacherResult(read_transfer_set(run.path), 0.0, True)
    start = time.perf_counter()
    teacher, tok = load_model(teacher_path)
    base_path = locality_base(model_path)
    base = teacher if base_path == teacher_path else load_model(base_path)[0]
    rows = build_transfer_set(
        teacher, tok, prompts, probes, config=config, base_model=base, subjects=subjects
    )
    write_transfer_set(run.path, rows, key)
    return TeacherResult(rows, time.perf_counter() - start, False)


def train_manifest(run: RunDir, prompts: Sequence[DensePrompt], teacher_path: str) -> dict:
    """The student's manifest entry for this batch: where it came from, which edits it holds."""
    from skedit.sft.transfer import approved

    ok = approved(prompts)
    return {
        "run_dir": str(run.path.resolve()),
        "teacher": teacher_path,
        "prompt_ids": [p.id for p in ok],
        "edit_ids": list(dict.fromkeys(e for p in ok for e in p.edit_ids)),
    }


def same_job_interrupted(run: RunDir, model: str, teacher: str, config: TrainConfig) -> bool:
    """True when a checkpoint of the very same job is waiting (the last run was interrupted):
    rerunning then continues it instead of starting over."""
    from skedit.sft.launch import JOB_FILE
    from skedit.sft.train import last_checkpoint

    job_file = run.path / JOB_FILE
    if not job_file.is_file() or last_checkpoint(run.model) is None:
        return False
    old = json.loads(job_file.read_text())
    return (old.get("model"), old.get("teacher"), old.get("training")) == (
        model,
        teacher,
        config.to_dict(),
    )


def train_stage(
    run: RunDir,
    config: TrainConfig,
    model_path: str,
    teacher_path: str,
    manifest: dict[str, Any],
    *,
    resume: bool,
    launcher: str | None = "inprocess",
    accelerate_config: str | None = None,
    processes: int | None = None,
    config_base: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train the student of ``run`` on ``DIR/transfer.jsonl``; returns the job's summary.

    ``launcher``: ``inprocess`` or ``accelerate`` (``accelerate launch -m skedit.sft.launch``,
    with ``accelerate_config``, found under ``config_base`` when relative); None picks
    accelerate when ``processes > 1`` or a config is named. ``processes``: data-parallel ranks
    (``batch_size`` is split across them); their logs go to ``DIR/logs/rank<N>.log``.
    ``quiet`` sends the launcher's stdout to stderr."""
    from skedit.sft.launch import (
        LOGS,
        accelerate_command,
        check_data_parallel,
        launch_env,
        resolve_launch,
        run_job,
        write_job,
    )

    launcher, n, accelerate_config = resolve_launch(launcher, processes, accelerate_config)
    check_data_parallel(config, n)
    write_job(run.path, model=model_path, teacher=teacher_path, config=config, manifest=manifest)
    if launcher != "accelerate":
        return run_job(run.path, resume=resume)
    cmd = accelerate_command(
        run.path,
        accelerate_config=accelerate_config,
        resume=resume,
        processes=processes,
        threads=config.threads,
        config_base=config_base,
    )
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, stdout=sys.stderr if quiet else None, env=launch_env(threads=config.threads)
    )
    if proc.returncode != 0:
        raise SkeditError(
            f"accelerate launch failed (exit {proc.returncode})",
            file=str(run.path / LOGS),
            hint="every rank's output is in rank<N>.log there; command: " + " ".join(cmd),
        )
    result = json.loads((run.model / "train_result.json").read_text())
    result["launcher_seconds"] = round(time.perf_counter() - start, 2)
    result["processes"] = n
    return result


def read_stage_inputs(run: RunDir) -> tuple[list[DensePrompt], list[Probe]]:
    """The run's prompts and probes (the inputs of the teacher stage)."""
    from skedit.prompts.io import read_jsonl

    return read_jsonl(run.prompts, DensePrompt), read_jsonl(run.probes, Probe)
