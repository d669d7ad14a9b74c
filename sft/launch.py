"""Module entry point for training from a run directory, in-process or under accelerate.

    python -m skedit.sft.launch DIR --config DIR/sft_job.json [--resume]
    accelerate launch [--config_file zero3.yaml] -m skedit.sft.launch DIR --config ...

The job file (written by ``skedit sft``) holds the model path, the teacher path, the training
options and the manifest entry; the transfer set is ``DIR/transfer.jsonl``. The main process
writes ``DIR/model/train_result.json`` when training finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from skedit.prompts.errors import SkeditError
from skedit.prompts.io import atomic_write_json
from skedit.sft.config import TrainConfig

JOB_FILE = "sft_job.json"
ACCELERATE_CONFIGS = {
    "multi_gpu": "multi_gpu.yaml",
    "single_gpu": "single_gpu.yaml",
    "zero1": "zero1.yaml",
    "zero2": "zero2.yaml",
    "zero3": "zero3.yaml",
    "fsdp": "fsdp2.yaml",
    "fsdp1": "fsdp1.yaml",
    "fsdp2": "fsdp2.yaml",
}


def write_job(
    run_dir: str | os.PathLike,
    *,
    model: str,
    teacher: str | None,
    config: TrainConfig,
    manifest: dict[str, Any],
) -> Path:
    job = {"model": model, "teacher": teacher, "training": config.to_dict(), "manifest": manifest}
    return atomic_write_json(Path(run_dir) / JOB_FILE, job)


def run_job(
    run_dir: str | os.PathLike, job_file: str | os.PathLike | None = None, *, resume: bool = False
) -> dict[str, Any]:
    """Train from a job file and the run's transfer set; returns the result summary."""
    from skedit.sft.train import train_student
    from skedit.sft.transfer import read_transfer_set

    run_dir = Path(run_dir)
    job_file = Path(job_file or run_dir / JOB_FILE)
    if not job_file.is_file():
        raise SkeditError(
            "no training job here",
            file=str(job_file),
            hint="run `skedit sft DIR` (it writes the job file)",
        )
    job = json.loads(job_file.read_text())
    config = TrainConfig.from_dict(job["training"], source=str(job_file))
    examples = read_transfer_set(run_dir)
    res = train_student(
        job["model"],
        examples,
        config,
        run_dir / "model",
        resume=resume,
        teacher_path=job.get("teacher"),
        manifest=job.get("manifest"),
    )
    summary = {
        "model_dir": str(res.model_dir),
        "method": config.method,
        "scope": config.scope,
        "train_seconds": round(res.train_seconds, 2),
        "trainable_parameters": res.trainable_parameters,
        "steps": res.steps,
    }
    if res.model_dir is not None:  # only the main process saves
        atomic_write_json(run_dir / "model" / "train_result.json", summary)
    return summary


def accelerate_config_path(name: str) -> str:
    """A TRL-shipped accelerate config by short name, or a user's file."""
    if name in ACCELERATE_CONFIGS:
        import trl

        return str(Path(trl.__file__).parent / "accelerate_configs" / ACCELERATE_CONFIGS[name])
    if Path(name).is_file():
        return str(Path(name))
    raise SkeditError(
        f"unknown accelerate config {name!r}",
        field="--accelerate-config",
        hint=f"use one of {', '.join(ACCELERATE_CONFIGS)} or a YAML file",
    )


def accelerate_command(
    run_dir, *, accelerate_config: str | None = None, resume: bool = False, cpu: bool | None = None
) -> list[str]:
    """The ``accelerate launch`` command line that runs this module on ``run_dir``."""
    import torch

    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        cmd += ["--config_file", accelerate_config_path(accelerate_config)]
    else:
        if cpu is None:
            cpu = not torch.cuda.is_available()
        cmd += [
            "--num_processes",
            "1" if cpu else str(max(1, torch.cuda.device_count())),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
        ]
        if cpu:
            cmd += ["--cpu"]
        elif torch.cuda.device_count() > 1:
            cmd += ["--multi_gpu"]
    cmd += ["-m", "skedit.sft.launch", str(run_dir)]
    return cmd + (["--resume"] if resume else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skedit.sft.launch", description="Train the student of a run directory."
    )
    parser.add_argument("run_dir")
    parser.add_argument("--config", help=f"job file (default: DIR/{JOB_FILE})")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    try:
        summary = run_job(args.run_dir, args.config, resume=args.resume)
    except SkeditError as exc:
        print(f"skedit: error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
