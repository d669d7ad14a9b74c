"""``skedit sft DIR``: teacher outputs for the approved prompts, then TRL training of the student."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from skedit.pipelines.run.recipes import load_recipe
from skedit.pipelines.run.rundir import RunDir
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import read_jsonl
from skedit.prompts.schema import DensePrompt, Probe
from skedit.sft.config import TrainConfig


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sft",
        help="distil the approved prompts into the student (teacher outputs + TRL training)",
        description="Build DIR/transfer.jsonl with the teacher (reused when its inputs are "
        "unchanged), train the student with TRL, and write DIR/model/.",
    )
    p.add_argument("run_dir", metavar="DIR", help="run directory written by `skedit agents run`")
    p.add_argument(
        "--method", choices=["sft", "kd"], help="sft: cross-entropy; kd: KL to the teacher"
    )
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft), merged on save")
    p.add_argument("--layers", help="decoder layers to train, e.g. 2,3")
    p.add_argument("--modules", help="module names to train in those layers, e.g. mlp")
    p.add_argument("--epochs", type=float, help="passes over the transfer set")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--lr", type=float, dest="learning_rate", help="learning rate")
    p.add_argument("--teacher", metavar="PATH", help="teacher model (default: the base model)")
    p.add_argument(
        "--kd-topk",
        type=int,
        metavar="K",
        help="kd from the teacher's top-K tokens stored in transfer.jsonl: no teacher runs "
        "during training (training.kd_teacher: topk, training.topk: K); 0: the live teacher",
    )
    p.add_argument("--recipe", metavar="YAML", help="a recipe whose `training:` section applies")
    p.add_argument(
        "--launcher",
        choices=["inprocess", "accelerate"],
        help="train in this process or under `accelerate launch` (default: inprocess, or "
        "accelerate with --processes N > 1 or --accelerate-config; recipe/config: launch:)",
    )
    p.add_argument(
        "--accelerate-config",
        metavar="NAME|FILE",
        help="multi_gpu, zero1/2/3, fsdp, or an accelerate YAML file",
    )
    p.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="data-parallel processes: N GPUs, or N CPU processes (gloo) where there is no GPU; "
        "the training batch_size is split across them (launch.processes in a recipe)",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would train, train nothing")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite an existing DIR/model")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SkeditError(f"not valid YAML: {exc}", file=str(path)) from exc
    if not isinstance(data, dict):
        raise SkeditError("expected a mapping at the top level", file=str(path))
    return data


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[DensePrompt], list[Probe]]:
    """The run's config, prompts and probes, with errors that say which file is missing."""
    if not run_dir.is_dir():
        raise SkeditError(
            "run directory not found", file=str(run_dir), hint="create one with `skedit agents run`"
        )
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise SkeditError(
            "missing config.yaml",
            file=str(run_dir),
            hint="the run directory needs config.yaml with `model: PATH`",
        )
    cfg = _load_yaml(cfg_path)
    if not cfg.get("model"):
        raise SkeditError(
            "no base model given",
            file=str(cfg_path),
            field="model",
            hint="add `model: <path of the base model>`",
        )
    files = {"prompts": RunDir(run_dir).prompts, "probes": RunDir(run_dir).probes}
    for name, f in files.items():
        if not f.is_file():
            raise SkeditError(
                f"missing {name} file",
                file=str(f),
                hint="run `skedit agents run` (and `skedit review`) first",
            )
    try:
        prompts = read_jsonl(files["prompts"], DensePrompt)
        probes = read_jsonl(files["probes"], Probe)
    except ValueError as exc:
        raise SkeditError(f"unreadable run file: {exc}", file=str(run_dir)) from exc
    return cfg, prompts, probes


def kept_from_run(run: dict[str, Any], recipe: dict[str, Any], run_dir: Path) -> list[str]:
    """Say which of the run's training options a recipe leaves as the run set them (those
    that differ from the defaults): a recipe applies on top of the run's config.yaml, so an
    option it does not name is not reset. Returns the option names."""
    defaults = TrainConfig().to_dict()
    kept = [k for k, v in run.items() if k not in recipe and k in defaults and v != defaults[k]]
    if kept:
        shown = ", ".join(f"{k}: {run[k]!r}" for k in kept)
        print(
            f"skedit: the recipe does not set {len(kept)} training option(s); kept from "
            f"{run_dir / 'config.yaml'}: {shown}",
            file=sys.stderr,
            flush=True,
        )
    return kept


def resolve_config(args: argparse.Namespace, cfg: dict[str, Any], run_dir: Path) -> TrainConfig:
    training = dict(cfg.get("training") or {})
    if args.recipe:
        recipe = load_recipe(args.recipe).get("training") or {}
        kept_from_run(training, recipe, run_dir)
        training.update(recipe)
    for key in ("method", "learning_rate"):
        if getattr(args, key) is not None:
            training[key] = getattr(args, key)
    if args.epochs is not None:
        training["epochs"], training["max_steps"] = args.epochs, 0
    if args.max_steps is not None:
        training["max_steps"] = args.max_steps
    if args.layers:
        training["layers"] = args.layers
    if args.modules:
        training["modules"] = args.modules
    if getattr(args, "kd_topk", None) == 0:  # back to the live teacher (recipes may set topk)
        training.update(kd_teacher="live", topk=0)
    elif getattr(args, "kd_topk", None):
        if training.get("method", "kd") != "kd":
            raise SkeditError(
                "--kd-topk distils from the teacher's top-k, which --method sft does not use",
                field="--kd-topk",
                hint="use --method kd, or drop --kd-topk",
            )
        training.update(kd_teacher="topk", topk=args.kd_topk)
    if args.lora:
        training["scope"] = "lora"
    elif args.layers or args.modules:
        training["scope"] = "layers"
    try:
        return TrainConfig.from_dict(training, source=str(run_dir / "config.yaml"))
    except (TypeError, ValueError) as exc:
        raise SkeditError(
            f"bad training option: {exc}", file=str(run_dir / "config.yaml"), field="training"
        ) from exc


def resolve_launch_settings(
    args: argparse.Namespace, cfg: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    """The ``launch:`` settings: the run's config.yaml, then the recipe, then the command line;
    ``config_base`` is where a relative accelerate config file is looked up (the recipe's
    folder, else the run's)."""
    from skedit.pipelines.run.config import LaunchSettings, _build_section
    from skedit.pipelines.run.recipes import recipe_path
    from skedit.sft.launch import resolve_launch

    merged = dict(cfg.get("launch") or {})
    base = str(run_dir)
    if args.recipe:
        recipe_launch = load_recipe(args.recipe).get("launch") or {}
        if recipe_launch.get("accelerate_config"):
            base = str(recipe_path(args.recipe).parent)
        merged.update(recipe_launch)
    source = args.recipe or str(run_dir / "config.yaml")
    settings = _build_section(LaunchSettings, merged, source=str(source), name="launch")
    launcher = args.launcher or settings.launcher
    processes = args.processes if args.processes is not None else settings.processes
    accelerate_config = args.accelerate_config or settings.accelerate_config
    if args.launcher == "inprocess":  # the command line wins over a recipe's launch: section
        processes, accelerate_config = args.processes, args.accelerate_config
    launcher, n, accelerate_config = resolve_launch(launcher, processes, accelerate_config)
    return {
        "launcher": launcher,
        "processes": processes,
        "n": n,
        "accelerate_config": accelerate_config,
        "config_base": base,
    }


def launch_plan(launch: dict[str, Any], config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """What the train stage would start: the command, the engine, the batch per process."""
    from skedit.sft.launch import (
        accelerate_command,
        check_accelerate_config,
        check_data_parallel,
        per_device_batch,
    )

    n = launch["n"]
    check_data_parallel(config, n)
    out: dict[str, Any] = {
        "launcher": launch["launcher"],
        "processes": n,
        "batch_per_process": per_device_batch(config.batch_size, n),
        "global_batch": config.batch_size * config.grad_accum,
    }
    if launch["launcher"] != "accelerate":
        return out
    if launch["accelerate_config"]:
        out["accelerate_config"] = check_accelerate_config(
            launch["accelerate_config"], base=launch["config_base"]
        )
    out["command"] = accelerate_command(
        run_dir,
        accelerate_config=launch["accelerate_config"],
        processes=launch["processes"],
        threads=config.threads,
        config_base=launch["config_base"],
        port=29500,
    )
    return out


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)  # Linux reports KiB


def plan(prompts, probes, config: TrainConfig, model_path: str) -> dict[str, Any]:
    """What would train: rows by kind (anchors counted with their repeats), parameters, steps."""
    from skedit.sft.modelops import load_model
    from skedit.sft.scope import apply_scope, trainable_parameters
    from skedit.sft.transfer import TRANSFER_KINDS, approved

    eids = {e for p in approved(prompts) for e in p.edit_ids}
    kinds = Counter(
        p.kind
        for p in probes
        if p.edit_id in eids and (p.kind in TRANSFER_KINDS or p.kind == "locality")
    )
    from skedit.sft.train import carried_rows, with_replay

    rows = sum(n for k, n in kinds.items() if k not in ("locality", "edit"))
    rows += kinds.get("locality", 0) * max(1, round(config.locality_weight))
    rows += kinds.get("edit", 0) * max(1, round(config.edit_weight))
    earlier = carried_rows(model_path)
    replayed = len(with_replay([], earlier, config.replay, config.seed))
    rows += replayed
    per_step = config.batch_size * config.grad_accum
    steps = (
        config.max_steps
        if config.max_steps > 0
        else math.ceil(config.epochs * math.ceil(rows / config.batch_size) / config.grad_accum)
    )
    model, _ = load_model(model_path, device="cpu")
    n_all = sum(p.numel() for p in model.parameters())
    n_train = trainable_parameters(apply_scope(model, config))
    return {
        "examples_by_kind": dict(kinds),
        "replayed_rows": replayed,
        "training_rows": rows,
        "steps": steps,
        "examples_per_step": per_step,
        "trainable_parameters": n_train,
        "total_parameters": n_all,
        "method": config.method,
        "scope": config.scope,
        "teacher_in_training": _teacher_in_training(config),
    }


def _teacher_in_training(config: TrainConfig) -> str:
    """What the KD loss reads during training, and what that costs in memory."""
    if config.method != "kd":
        return "none (sft trains on the teacher's answers)"
    if config.stored_topk:
        return f"none (the teacher's top-{config.topk} stored in transfer.jsonl)"
    if config.scope == "lora":
        return "live: the base weights with the adapters off (or --teacher), a forward pass a step"
    return "live: a frozen copy of the model (or --teacher) in memory, a forward pass a step"


def run(args: argparse.Namespace) -> int:
    from skedit.sft.transfer import approved

    run_dir = Path(args.run_dir)
    cfg, prompts, probes = read_run(run_dir)
    config = resolve_config(args, cfg, run_dir)
    launch = resolve_launch_settings(args, cfg, run_dir)
    model_path = str(cfg["model"])
    teacher_path = str(args.teacher or cfg.get("teacher") or model_path)
    from skedit.sft.train import carried_rows, check_replay_topk

    check_replay_topk(model_path, config, carried_rows(model_path))  # before the teacher runs
    ok = approved(prompts)
    if not ok:
        raise SkeditError(
            "no approved prompts to train on",
            file=str(run_dir / "prompts"),
            hint="approve prompts with `skedit review DIR`",
        )
    launch_info = launch_plan(launch, config, run_dir)  # its errors before any work
    if args.dry_run:
        info = {**plan(prompts, probes, config, model_path), "launch": launch_info}
        print(json.dumps(info, indent=None if args.json else 2))
        return 0
    finished = (run_dir / "model" / "model.safetensors").exists()
    if finished and args.resume and not args.force:
        from skedit.sft.train import last_checkpoint

        if last_checkpoint(run_dir / "model") is None:
            print(
                "skedit: the student in DIR/model is finished: nothing to resume "
                "(--force trains it again)",
                file=sys.stderr,
            )
            return 0
    if finished and not (args.force or args.resume):
        raise SkeditError(
            "a trained student is already here",
            file=str(run_dir / "model"),
            hint="pass --force to train it again",
        )
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    # with --json, stdout carries only the result: progress and trainer logs go to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        out = _train(args, run_dir, prompts, probes, config, model_path, teacher_path, launch)
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"student written to {out['model_dir']}: {config.method}/{config.scope}, "
            f"{out['steps']} steps on {out['examples']} examples; teacher "
            f"{out['teacher_seconds']:.1f}s, training {out['train_seconds']:.1f}s, "
            f"peak RAM {out['peak_rss_mb']:.0f} MB"
        )
    return 0


def _train(
    args,
    run_dir: Path,
    prompts,
    probes,
    config: TrainConfig,
    model_path: str,
    teacher_path: str,
    launch: dict[str, Any],
) -> dict[str, Any]:
    from skedit.pipelines.run.stages import (
        same_job_interrupted,
        teacher_stage,
        train_manifest,
        train_stage,
    )

    run = RunDir(run_dir)
    teacher = teacher_stage(run, prompts, probes, config, model_path, teacher_path)
    resume = args.resume or same_job_interrupted(run, model_path, teacher_path, config)
    if resume and not args.json:
        print("resuming the interrupted training from its last checkpoint", file=sys.stderr)
    result = train_stage(
        run,
        config,
        model_path,
        teacher_path,
        train_manifest(run, prompts, teacher_path),
        resume=resume,
        launcher=launch["launcher"],
        accelerate_config=launch["accelerate_config"],
        processes=launch["processes"],
        config_base=launch["config_base"],
        quiet=args.json,
    )
    return {
        "model_dir": result["model_dir"],
        "method": config.method,
        "scope": config.scope,
        "teacher_seconds": round(teacher.seconds, 2),
        "transfer_reused": teacher.reused,
        "train_seconds": result["train_seconds"],
        "peak_rss_mb": _peak_rss_mb(),
        "trainable_parameters": result["trainable_parameters"],
        "steps": result["steps"],
        "examples": len(teacher.rows),
        "launcher": launch["launcher"],
        "processes": launch["n"],
        "resumed_from": result.get("resumed_from"),
    }
