"""Module entry point for training from a run directory, in-process or under accelerate.

    python -m skedit.sft.launch DIR --config DIR/sft_job.json [--resume]
    accelerate launch [--config_file zero3.yaml] -m skedit.sft.launch DIR --config ...

The job file (written by ``skedit sft``) holds the model path, the teacher path, the training
options and the manifest entry; the transfer set is ``DIR/transfer.jsonl``. The main process
writes ``DIR/model/train_result.json`` when training finishes.

Data parallelism: ``processes > 1`` runs that many ranks (``accelerate launch --multi_gpu``,
which starts them with torchrun; without a GPU they train on CPU over gloo). ``batch_size``
stays the global micro-batch, split evenly across the ranks, so the optimizer sees the same
examples per step as one process does. Every rank under accelerate writes
``DIR/logs/rank<N>.log``; rank 0 also writes to the console.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from skedit.prompts.errors import SkeditError
from skedit.prompts.io import atomic_write_json
from skedit.sft.config import TrainConfig
from skedit.sft.ranks import die_with_parent, rank, tee_to_log, world_size  # noqa: F401

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
LOGS = "logs"
LAUNCHERS = ("inprocess", "accelerate")


def resolve_launch(
    launcher: str | None, processes: int | None, accelerate_config: str | None
) -> tuple[str, int, str | None]:
    """``(launcher, processes, accelerate_config)`` checked: more than one process, or a named
    accelerate config, needs the accelerate launcher (the default then)."""
    processes = 1 if processes is None else processes
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise SkeditError(
            f"processes must be a whole number of at least 1, got {processes!r}",
            field="--processes",
            hint="1 trains in one process; 2 or more run data-parallel under accelerate",
        )
    if launcher is not None and launcher not in LAUNCHERS:
        raise SkeditError(
            f"unknown launcher {launcher!r}", field="launcher", hint="use inprocess or accelerate"
        )
    if launcher is None:
        launcher = "accelerate" if processes > 1 or accelerate_config else "inprocess"
    if launcher == "inprocess" and processes > 1:
        raise SkeditError(
            f"{processes} processes cannot train in this one process",
            field="--processes",
            hint="drop --launcher inprocess (more processes run under accelerate), or use "
            "--processes 1",
        )
    if launcher == "inprocess" and accelerate_config:
        raise SkeditError(
            "an accelerate config is read only by the accelerate launcher",
            field="--accelerate-config",
            hint="use --launcher accelerate, or drop --accelerate-config",
        )
    return launcher, processes, accelerate_config


def check_data_parallel(config: TrainConfig, processes: int) -> None:
    """The global micro-batch (``batch_size``) must split evenly across the processes."""
    if processes > 1 and config.batch_size % processes:
        raise SkeditError(
            f"batch_size {config.batch_size} does not split evenly across {processes} processes",
            field="training.batch_size",
            hint=f"use a batch_size that is a multiple of {processes} (it is the global "
            "micro-batch; each process takes batch_size / processes)",
        )


def per_device_batch(batch_size: int, world_size: int) -> int:
    """Examples per rank per micro-batch: the global micro-batch split across the ranks."""
    if world_size <= 1:
        return batch_size
    if batch_size % world_size:
        raise SkeditError(
            f"batch_size {batch_size} does not split evenly across {world_size} processes",
            field="training.batch_size",
        )
    return batch_size // world_size


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
    resumed = getattr(res, "resumed_from", None)
    summary = {
        "model_dir": str(res.model_dir) if res.model_dir is not None else None,
        "method": config.method,
        "scope": config.scope,
        "train_seconds": round(res.train_seconds, 2),
        "trainable_parameters": res.trainable_parameters,
        "steps": res.steps,
        "processes": world_size(),
        "resumed_from": Path(resumed).name if resumed else None,
    }
    if res.model_dir is not None:  # only the main process saves
        atomic_write_json(run_dir / "model" / "train_result.json", summary)
    return summary


def accelerate_config_path(name: str, *, base: str | os.PathLike | None = None) -> str:
    """A TRL-shipped accelerate config by short name, or a user's file (a relative path is
    looked up in the working directory, then under ``base``: the folder of the recipe that
    names it)."""
    if name in ACCELERATE_CONFIGS:
        import trl

        return str(Path(trl.__file__).parent / "accelerate_configs" / ACCELERATE_CONFIGS[name])
    for candidate in (Path(name), *([Path(base) / name] if base else [])):
        if candidate.is_file():
            return str(candidate)
    raise SkeditError(
        f"unknown accelerate config {name!r}",
        field="--accelerate-config",
        hint=f"use one of {', '.join(ACCELERATE_CONFIGS)} or a YAML file",
    )


def check_accelerate_config(name: str, *, base: str | os.PathLike | None = None) -> dict[str, Any]:
    """Find an accelerate config and parse it with accelerate's own reader: which engine it
    runs (DDP, FSDP, DeepSpeed ZeRO-n), and what this machine lacks to run it."""
    path = accelerate_config_path(name, base=base)
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        cfg = load_config_from_file(path)
    except Exception as exc:  # accelerate raises ValueError/TypeError/YAMLError alike
        raise SkeditError(
            f"accelerate cannot read this config: {exc}", file=path, field="accelerate_config"
        ) from None
    kind = getattr(cfg.distributed_type, "value", str(cfg.distributed_type))
    info: dict[str, Any] = {
        "file": path,
        "distributed_type": kind,
        "num_processes": cfg.num_processes,
        "mixed_precision": str(getattr(cfg.mixed_precision, "value", cfg.mixed_precision)),
        "missing": [],
    }
    if kind == "DEEPSPEED":
        ds = cfg.deepspeed_config or {}
        ds_file = ds.get("deepspeed_config_file")
        if ds_file:
            f = Path(ds_file) if Path(ds_file).is_absolute() else Path(path).parent / ds_file
            try:
                ds = {**ds, **json.loads(f.read_text())}
            except (OSError, ValueError) as exc:
                raise SkeditError(
                    f"the DeepSpeed config it names is unreadable: {exc}",
                    file=str(f),
                    field="deepspeed_config_file",
                ) from None
        stage = ds.get("zero_stage", (ds.get("zero_optimization") or {}).get("stage"))
        info["engine"] = f"DeepSpeed ZeRO-{stage}" if stage is not None else "DeepSpeed"
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            info["missing"].append("deepspeed (pip install deepspeed)")
    elif kind == "FSDP":
        info["engine"] = f"FSDP{(cfg.fsdp_config or {}).get('fsdp_version', 1)}"
    elif kind in ("MULTI_GPU", "MULTI_CPU"):
        info["engine"] = "DDP"
    else:
        info["engine"] = "one process" if kind == "NO" else kind
    return info


def free_port() -> int:
    """A TCP port nobody listens on now (the rendezvous of the ranks; 29500, torchrun's
    default, may be taken by another job on the same machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _on_cpu(cpu: bool | None) -> bool:
    import torch

    return not torch.cuda.is_available() if cpu is None else cpu


def accelerate_command(
    run_dir,
    *,
    accelerate_config: str | None = None,
    resume: bool = False,
    cpu: bool | None = None,
    processes: int | None = None,
    threads: int = 0,
    port: int | None = None,
    config_base: str | os.PathLike | None = None,
) -> list[str]:
    """The ``accelerate launch`` command line that runs this module on ``run_dir``.

    ``processes``: ranks to start (None: one on CPU, every GPU otherwise; with a TRL config
    name, every GPU rather than the file's 8). Two or more go through ``--multi_gpu``
    (torchrun): accelerate's ``--cpu`` starts a single process whatever ``--num_processes``
    says, so on CPU the ranks are started the same way and train over gloo (see
    :func:`launch_env`). ``threads``: torch threads per rank on CPU (0: the cores shared out).
    """
    import torch

    cpu = _on_cpu(cpu)
    gpus = 0 if cpu else torch.cuda.device_count()
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        cmd += ["--config_file", accelerate_config_path(accelerate_config, base=config_base)]
        n = processes
        if n is None and accelerate_config in ACCELERATE_CONFIGS and gpus:
            n = gpus  # TRL's files say 8
        if n is not None:
            cmd += ["--num_processes", str(n)]
    else:
        n = processes if processes is not None else (1 if cpu else max(1, gpus))
        cmd += [
            "--num_processes",
            str(n),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
        ]
        if n > 1:
            cmd += ["--multi_gpu"]
        elif cpu:
            cmd += ["--cpu"]
    if n is None or n > 1:
        cmd += ["--main_process_port", str(port or free_port())]
    if cpu:
        per_rank = threads or max(1, (os.cpu_count() or 1) // max(1, n or 1))
        cmd += ["--num_cpu_threads_per_process", str(per_rank)]
    cmd += ["-m", "skedit.sft.launch", str(run_dir), "--log-dir", str(Path(run_dir) / LOGS)]
    return cmd + (["--resume"] if resume else [])


def launch_env(*, cpu: bool | None = None, threads: int = 0) -> dict[str, str]:
    """The environment of ``accelerate launch``: on CPU no GPU is visible (the ranks then pick
    the CPU and gloo), and torch gets ``threads`` threads per rank when set."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if _on_cpu(cpu):
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["ACCELERATE_USE_CPU"] = "true"
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skedit.sft.launch", description="Train the student of a run directory."
    )
    parser.add_argument("run_dir")
    parser.add_argument("--config", help=f"job file (default: DIR/{JOB_FILE})")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument(
        "--log-dir", help="copy this rank's output to LOG_DIR/rank<N>.log (rank 0 also prints)"
    )
    args = parser.parse_args(argv)
    die_with_parent()
    if args.log_dir:
        tee_to_log(args.log_dir)
    try:
        summary = run_job(args.run_dir, args.config, resume=args.resume)
    except SkeditError as exc:
        print(f"skedit: error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
