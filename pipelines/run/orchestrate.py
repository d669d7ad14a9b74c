"""``skedit run``: agents → review → teacher → training → evaluation in one run directory.

Each stage is skipped when it finished before with the same inputs, so a rerun after a crash,
a Ctrl-C or the review pause continues where the work stopped. The stages themselves keep
their own finer-grained progress (LangGraph checkpoints, training checkpoints).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from skedit.pipelines.eval.hooks import HookFactory
from skedit.pipelines.run.config import RunConfig, dump_config, load_config, parse_config
from skedit.pipelines.run.memory import PeakMemory
from skedit.pipelines.run.rundir import STAGES, RunDir, hash_inputs
from skedit.pipelines.run.stages import (
    edit_subjects,
    read_stage_inputs,
    teacher_key,
    teacher_stage,
    train_manifest,
    train_stage,
)
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import atomic_write_text


@dataclass
class RunOutcome:
    status: str  # "awaiting_review" | "done"
    run_dir: Path
    stages: dict[str, dict] = field(default_factory=dict)


def resolve_model(config: RunConfig, default_model: Callable[[], str] | None = None) -> str:
    """The base model's path: the config's, else ``default_model()`` (the CLI's: the synthetic
    world model, built if needed)."""
    if config.model:
        return config.model
    if default_model is None:
        raise SkeditError("no base model given", field="model", hint="add `model: PATH`")
    return default_model()


def check_resumable(run_dir: str | os.PathLike) -> None:
    """Refuse a folder that holds no run (a typo in ``--resume DIR``), before anything is made."""
    if not (Path(run_dir) / "config.yaml").is_file():
        raise SkeditError(
            "not a skedit run directory (no config.yaml)",
            file=str(run_dir),
            hint="start one with: skedit run EDITS --run DIR",
        )


def prepare_run(
    run: RunDir,
    *,
    edits_path: str | os.PathLike | None,
    config: RunConfig | None,
    resume: bool,
    resolve: Callable[[RunConfig], str] = resolve_model,
) -> RunConfig:
    """Write (new run) or read (resume) the resolved ``config.yaml`` and the input edits.

    ``model: null`` is resolved (``resolve``: the CLI's default model) before the saved
    config is compared: the agents stage records the path it used, and the same command run
    again must find the same model and resume."""
    if resume:
        check_resumable(run.path)
        return load_config(run.config)
    if edits_path is None:
        raise SkeditError("no edits file given", hint="skedit run EDITS --run DIR")
    config = config or parse_config({})
    src = Path(edits_path)
    if not src.is_file():
        raise SkeditError("edits file not found", file=str(src))
    if not config.model:
        config.model = resolve(config)
    if run.config.exists() and run.config.read_text(encoding="utf-8") != dump_config(config):
        existing = load_config(run.config)
        if (
            dataclasses.asdict(existing.section("agents"))
            != dataclasses.asdict(config.section("agents"))
            or existing.model != config.model
        ):
            run.invalidate_from("agents")
    atomic_write_text(run.config, dump_config(config))
    input_copy = run.path / "input" / src.name
    if not input_copy.exists() or input_copy.read_bytes() != src.read_bytes():
        input_copy.parent.mkdir(parents=True, exist_ok=True)
        for old in input_copy.parent.iterdir():
            old.unlink()
        # a byte-for-byte copy (the loader, not this copy, reports undecodable bytes)
        tmp = input_copy.with_name(f".{input_copy.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, input_copy)
    return config


def _input_edits(run: RunDir) -> Path:
    files = sorted((run.path / "input").glob("*")) if (run.path / "input").is_dir() else []
    if not files:
        raise SkeditError("the run directory has no input edits", file=str(run.path / "input"))
    return files[0]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_pipeline(
    run_dir: str | os.PathLike,
    *,
    edits_path: str | os.PathLike | None = None,
    config: RunConfig | None = None,
    resume: bool = False,
    auto_approve: bool = False,
    force: set[str] | None = None,
    progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
    eval_hook_for: HookFactory | None = None,
    default_model: Callable[[], str] | None = None,
) -> RunOutcome:
    """Run every stage that is not finished yet; stop at review unless ``auto_approve``.

    ``eval_hook_for``: what the base model's source adds to the evaluation (see
    ``skedit.pipelines.eval.hooks``); ``default_model``: the model of a config without one.
    The CLI passes the synthetic world's for both."""
    force = _forced_stages(force)
    if resume:
        check_resumable(run_dir)  # before RunDir's lock creates the folder
    run = RunDir(run_dir)
    with run:
        config = prepare_run(
            run,
            edits_path=edits_path,
            config=config,
            resume=resume,
            resolve=lambda c: resolve_model(c, default_model),
        )
        # a resumed run keeps the choices it was started with (--auto-approve)
        options = run.options()
        auto_approve = auto_approve or (resume and bool(options.get("auto_approve")))
        run.save_options(auto_approve=auto_approve)
        model_path = resolve_model(config, default_model)
        stages = _Stages(run, RunOutcome(status="done", run_dir=run.path), force, on_stage)

        agents_cfg = config.section("agents")
        edits_file = _input_edits(run)
        agents_hash = hash_inputs(
            dataclasses.asdict(agents_cfg), model_path, auto_approve, files=[edits_file]
        )
        status = stages.stage(
            "agents",
            agents_hash,
            lambda fresh: _agents_stage(
                run, edits_file, model_path, agents_cfg, auto_approve, progress, fresh
            ),
        )
        if status == "awaiting_review":
            stages.outcome.status = "awaiting_review"
            return stages.outcome
        _distil_and_evaluate(stages, config, model_path, eval_hook_for)
        return stages.outcome


def _forced_stages(force: set[str] | None) -> set[str]:
    """``--force`` stages, checked (``all``: every stage)."""
    force = set(force or ())
    unknown = force - set(STAGES) - {"all"}
    if unknown:
        raise SkeditError(
            f"unknown stage(s) for --force: {', '.join(sorted(unknown))}",
            hint=f"stages: {', '.join(STAGES)}",
        )
    return set(STAGES) if "all" in force else force


@dataclass
class _Stages:
    """Runs one stage at a time: skipped when done with the same inputs, else marked started,
    timed, its peak memory sampled, and marked done."""

    run: RunDir
    outcome: RunOutcome
    force: set[str]
    on_stage: Callable[[str], None] | None = None

    def stage(self, name: str, inputs: str, body: Callable[[bool], str | None]) -> str | None:
        run = self.run
        prev = run.stages().get(name) or {}
        # fresh: nothing half-done of *these* inputs exists, so partial outputs are stale
        fresh = name in self.force or prev.get("input_hash") != inputs
        if name in self.force:
            run.invalidate_from(name)
        elif run.is_done(name, inputs):
            _say(f"[{STAGES.index(name) + 1}/{len(STAGES)}] {name}: done before, skipped")
            self.outcome.stages[name] = run.stages()[name]
            return None
        _say(f"[{STAGES.index(name) + 1}/{len(STAGES)}] {name} …")
        if self.on_stage:
            self.on_stage(name)
        run.mark(name, done=False, input_hash=inputs, started=time.time())
        t0 = time.perf_counter()
        with PeakMemory() as mem:
            result = body(fresh)
        if result == "awaiting_review":
            run.mark(name, done=False, status="awaiting_review")
            return result
        rec = {
            "done": True,
            "input_hash": inputs,
            "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(mem.peak, 1),
        }
        run.mark(name, **rec)
        self.outcome.stages[name] = rec
        return result


def _distil_and_evaluate(
    stages: _Stages, config: RunConfig, model_path: str, eval_hook_for: HookFactory | None
) -> None:
    """The stages after review: teacher, train, eval."""
    run = stages.run
    teacher_path = config.teacher or model_path
    train_cfg = config.section("training")
    prompts, probes = read_stage_inputs(run)
    subjects = edit_subjects(run)
    teacher_hash = hash_inputs(
        model_path, teacher_key(prompts, probes, train_cfg, teacher_path, subjects)
    )
    stages.stage(
        "teacher",
        teacher_hash,
        lambda fresh: _teacher_stage(
            run, prompts, probes, model_path, teacher_path, train_cfg, fresh=fresh
        ),
    )
    train_hash = hash_inputs(
        model_path, teacher_path, dataclasses.asdict(train_cfg), config.seed, files=[run.transfer]
    )
    stages.stage(
        "train",
        train_hash,
        lambda fresh: _train_stage(
            run, prompts, model_path, teacher_path, train_cfg, config, fresh=fresh
        ),
    )
    eval_cfg = config.section("evaluation")
    eval_hash = hash_inputs(
        dataclasses.asdict(eval_cfg),
        config.editors,
        model_path,
        files=[run.model / "model.safetensors", run.probes, run.prompts],
    )
    stages.stage(
        "eval", eval_hash, lambda fresh: _eval_stage(run, eval_cfg, eval_hook_for, config.editors)
    )


# --- the stages: thin calls into the packages that own the work --------------------------------


def _agents_stage(
    run: RunDir,
    edits_file: Path,
    model_path: str,
    cfg,
    auto_approve: bool,
    progress: bool,
    fresh: bool,
) -> str:
    from skedit.agents.workflow import CHECKPOINTS, THREAD_FILE, run_agents
    from skedit.pipelines.data.datasets import load_edits
    from skedit.prompts.runfiles import LLM_CALLS

    if fresh:  # other edits or settings than the saved thread's: start a new batch
        # (THREAD_FILE: the thread id in a database checkpointer; forgetting it starts anew)
        for old in [
            *run.path.glob(CHECKPOINTS + "*"),
            run.path / THREAD_FILE,
            run.edits,
            run.probes,
            run.path / LLM_CALLS,  # the calls of that batch, not of this one
        ]:
            old.unlink(missing_ok=True)
        shutil.rmtree(run.prompts.parent, ignore_errors=True)
    edits = load_edits(edits_file).edits
    return run_agents(
        edits,
        run.path,
        model_path=model_path,
        config=cfg,
        auto_approve=auto_approve,
        progress=progress,
    )


def _teacher_stage(
    run: RunDir, prompts, probes, model_path: str, teacher_path: str, train_cfg, *, fresh: bool
) -> None:
    from skedit.sft.transfer import approved

    if not approved(prompts):
        raise SkeditError(
            "no approved prompts: nothing to teach",
            file=str(run.prompts),
            hint=f"approve prompts with: skedit review {run.path}",
        )
    teacher_stage(run, prompts, probes, train_cfg, model_path, teacher_path, reuse=not fresh)


def _train_stage(
    run: RunDir, prompts, model_path: str, teacher_path: str, train_cfg, config, *, fresh: bool
) -> None:
    if fresh and run.model.exists():  # a model or checkpoints of other inputs: start over
        shutil.rmtree(run.model)
    manifest = train_manifest(run, prompts, teacher_path)
    launch = config.sections.get("launch")  # how it runs, not what it trains: not in the hash
    train_stage(
        run,
        train_cfg,
        model_path,
        teacher_path,
        manifest,
        resume=True,
        launcher=launch.launcher if launch else "inprocess",
        processes=launch.processes if launch else None,
        accelerate_config=launch.accelerate_config if launch else None,
        config_base=str(run.path),
    )


def _eval_stage(run: RunDir, eval_cfg, hook_for: HookFactory | None, editors=None) -> None:
    from skedit.pipelines.eval.harness import evaluate_run

    probes = None
    if eval_cfg.probes_per_edit:
        from skedit.pipelines.eval.metrics import first_per_edit
        from skedit.prompts.io import read_jsonl
        from skedit.prompts.schema import Probe

        probes = first_per_edit(read_jsonl(run.probes, Probe), eval_cfg.probes_per_edit)
    evaluate_run(
        run.path,
        baselines=list(eval_cfg.baselines),
        probes=probes,
        hparams=editors or None,
        sequential=eval_cfg.sequential,
        retention=eval_cfg.retention,
        hook_for=hook_for,
    )


def next_step_message(run_dir: Path) -> str:
    return (
        f"The prompts are ready for review in {run_dir}/prompts/.\n"
        f"  skedit review {run_dir}                 # list them\n"
        f"  skedit review {run_dir} show ID         # read one\n"
        f"  skedit review {run_dir} approve --all   # or approve/reject/edit by id\n"
        f"then continue with:\n"
        f"  skedit run --resume {run_dir}"
    )
