"""Train the student on the transfer set with TRL, save it with a manifest of what it carries.

``sft``: TRL ``SFTTrainer``'s own loss on the completion tokens (pre-tokenised prompt +
completion, labels -100 on the prompt). ``kd``: :class:`skedit.sft.kd.KDTrainer`, forward KL to
the teacher reading the dense prompt. Both tokenise with ``modelops.encode_input`` /
``encode_target``, the same ids the evaluation scores, and add no EOS after the answer.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skedit.prompts.io import atomic_write_json
from skedit.prompts.schema import TransferExample
from skedit.sft.config import TrainConfig
from skedit.sft.kd import KDCollator, KDTrainer, SubjectGate, encode_example, shared_words
from skedit.sft.replay import (  # noqa: F401 (re-exported: callers name them from here)
    CARRIED_ROWS,
    _other_vocabulary,
    carried_rows,
    check_replay_topk,
    check_topk_ids,
    with_replay,
)
from skedit.sft.scope import apply_scope, trainable_parameters

MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainResult:
    model_dir: Path | None
    train_seconds: float
    trainable_parameters: int
    log_history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    examples: int = 0
    resumed_from: str | None = None  # the checkpoint training continued from


def repeats(ex: TransferExample) -> int:
    """How often a row is seen per epoch: its weight, rounded, at least once."""
    return max(1, round(ex.weight))


def build_dataset(
    tokenizer,
    examples: Sequence[TransferExample],
    method: str,
    *,
    topk: int = 0,
    gate: bool = False,
    gate_words: str = "all",
):
    """A pre-tokenised ``datasets.Dataset`` (rows repeated by weight) for the chosen method;
    ``topk > 0``: kd rows carry the teacher's stored top-k instead of the teacher's input;
    ``gate``: kd rows carry where the MLPs learn (``training.subject_gate``), through the
    words of the subject that no other edited subject has with ``gate_words="distinct"``."""
    from datasets import Dataset

    rows = []
    kd = method == "kd"
    skip = frozenset()
    if gate_words == "distinct":
        skip = shared_words(ex.subject for ex in examples if ex.kind != "locality")
    for ex in examples:
        enc = encode_example(tokenizer, ex, topk=topk if kd else 0, gate=gate and kd, skip=skip)
        if not enc["completion_ids"]:
            continue
        if method == "sft":
            p, c = enc["prompt_ids"], enc["completion_ids"]
            enc = {"input_ids": p + c, "labels": [-100] * len(p) + c}
        rows += [enc] * repeats(ex)
    return Dataset.from_list(rows)


def gated_mlps(model, config: TrainConfig) -> list:
    """The MLP modules ``training.subject_gate`` hooks: those of the trained layers (every
    layer unless ``layers`` names some)."""
    from skedit.sft import arch

    layers = config.layers or range(arch.num_layers(model))
    return [arch.mlp(model, i) for i in layers]


def unpatch(model) -> None:
    """Drop the fused-LM-head ``forward`` SFTTrainer sets on the instance, so a later copy of
    the model runs its own weights (the patch closes over the original object)."""
    for m in (model, getattr(model, "get_base_model", lambda: None)()):
        if m is not None:
            m.__dict__.pop("forward", None)


def _quiet_progress(trainer):
    """Keep the progress bar but not one printed dict per logging step (the Trainer's
    ``ProgressCallback`` writes every log line to stdout; skedit keeps them in the training log
    and the loss curve)."""
    from transformers.trainer_callback import ProgressCallback

    class _BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(_BarOnly())
    return trainer


def build_trainer(
    model, tokenizer, examples, config: TrainConfig, out_dir, *, teacher=None, callbacks=None
):
    """Scope the model, make the KD teacher if needed, and return ``(trainer, model)``."""
    unpatch(model)
    stored = config.stored_topk
    if stored:
        teacher = None  # the transfer set carries the teacher's top-k: no teacher in memory
        check_topk_ids(examples, model.get_output_embeddings().weight.shape[0])
    elif config.method == "kd" and teacher is None and config.scope != "lora":
        # a frozen copy BEFORE the trainer patches forward; with LoRA the teacher is the same
        # model with its adapters disabled
        teacher = copy.deepcopy(model)
    # hooked before peft wraps the model: the MLP modules stay the same objects inside it
    gate = SubjectGate(gated_mlps(model, config)) if config.subject_gate else None
    model = apply_scope(model, config)
    preserve = None
    if config.preserve_weight:
        from skedit.sft.preserve import anchor_preserve

        preserve = anchor_preserve(model, tokenizer, examples, config.preserve_weight)
    if config.nullspace:
        from skedit.sft.preserve import NullSpaceCallback, null_space

        space = null_space(model, tokenizer, examples, config.nullspace, config.nullspace_samples)
        callbacks = [*(callbacks or []), NullSpaceCallback(space)]
    change_scale = None
    if config.delta_scale < 1.0:
        from skedit.sft.preserve import check_unsharded
        from skedit.sft.scope import ChangeScale

        check_unsharded("delta_scale")
        change_scale = ChangeScale(model, config.delta_scale)  # before a resume loads weights
    args = config.to_sft_config(out_dir)
    # data-parallel ranks split the global micro-batch: every optimizer step sees the same
    # examples as one process does (see skedit.sft.launch)
    from skedit.sft.launch import per_device_batch, world_size

    args.per_device_train_batch_size = per_device_batch(config.batch_size, world_size())
    dataset = build_dataset(
        tokenizer,
        examples,
        config.method,
        topk=config.topk if stored else 0,
        gate=config.subject_gate,
        gate_words=config.subject_gate_words,
    )
    if len(dataset) == 0:
        from skedit.prompts.errors import SkeditError

        raise SkeditError(
            "the transfer set has no trainable rows (every completion is empty)",
            hint="check the teacher's answers in transfer.jsonl",
        )
    common = dict(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    if config.method == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(**common)
    else:
        trainer = KDTrainer(
            **common,
            data_collator=KDCollator(tokenizer.pad_token_id or 0),
            teacher_model=teacher,
            temperature=config.kd_temperature,
            kl_weight=config.kl_weight,
            ce_weight=config.ce_weight,
            gate=gate,
            preserve=preserve,
        )
    trainer.change_scale = change_scale
    return _quiet_progress(trainer), model


def last_checkpoint(out_dir: str | os.PathLike) -> str | None:
    """The newest *complete* checkpoint: a process killed while saving leaves a folder without
    ``trainer_state.json`` (the Trainer writes it last), which must not be resumed from."""
    ck = Path(out_dir) / CHECKPOINTS
    if not ck.is_dir():
        return None
    done = [
        d
        for d in ck.glob("checkpoint-*")
        if d.name.split("-")[-1].isdigit() and (d / "trainer_state.json").is_file()
    ]
    return str(max(done, key=lambda d: int(d.name.split("-")[-1]))) if done else None


def end_training(trainer, model) -> None:
    """Take ``training.subject_gate``'s hooks off the trained model and scale its change by
    ``training.delta_scale``."""
    if getattr(trainer, "gate", None) is not None:
        trainer.gate.remove()
    if getattr(trainer, "change_scale", None) is not None:
        trainer.change_scale.apply(model)


def _finish(model):
    """The plain model after training: adapters merged, fused head removed, eval mode."""
    unpatch(model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
        unpatch(model)
    model.requires_grad_(False)
    model.eval()
    return model


def train_in_memory(
    model, tokenizer, examples: Sequence[TransferExample], config: TrainConfig, *, teacher=None
):
    """Train ``model`` on ``examples`` and return it (LoRA merged). Writes no files that stay."""
    if config.threads:
        torch.set_num_threads(config.threads)
    cfg = copy.copy(config)
    cfg.save_steps = 10**9  # no checkpoints
    with tempfile.TemporaryDirectory(prefix="skedit-train-") as tmp:
        trainer, model = build_trainer(model, tokenizer, examples, cfg, tmp, teacher=teacher)
        model.train()
        trainer.train()
        end_training(trainer, model)
    return _finish(model)


def _kd_teacher(model, tokenizer, config: TrainConfig, model_path, teacher_path):
    """The frozen teacher KD reads during training: None for SFT, for the student's own base
    (a copy is made later) and for stored top-k (only the vocabularies must agree)."""
    from skedit.sft.modelops import load_model

    other = config.method == "kd" and teacher_path and str(teacher_path) != str(model_path)
    if not other:
        return None
    if config.stored_topk:
        # the rows hold the teacher's token ids: only its tokenizer is needed, not its weights
        from transformers import AutoTokenizer

        same = AutoTokenizer.from_pretrained(str(teacher_path)).get_vocab() == tokenizer.get_vocab()
        if not same:
            _other_vocabulary()
        return None
    teacher, _ = load_model(teacher_path)
    if (
        teacher.get_output_embeddings().weight.shape[0]
        != model.get_output_embeddings().weight.shape[0]
    ):
        _other_vocabulary()
    return teacher


# 82 lines, kept whole on purpose: it is the one place that orders model loading, scope, the
# trainer, checkpoint resume and the manifest; each step is a call, and splitting it would pass
# half a dozen objects between the halves
def train_student(
    model_path: str | os.PathLike,
    examples: Sequence[TransferExample],
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    teacher_path: str | os.PathLike | None = None,
    manifest: dict[str, Any] | None = None,
    callbacks=None,
) -> TrainResult:
    """Load ``model_path``, train, and save the student to ``out_dir``.

    Checkpoints go to ``out_dir/checkpoints`` every ``save_steps``; ``resume=True`` continues
    from the last one. ``out_dir`` gets safetensors, tokenizer, ``manifest.json`` (grown from
    ``model_path``'s own manifest when the base is an earlier student), ``training_log.json``,
    ``train_config.json`` and ``loss.png``. Checkpoints are removed after a finished run.
    """
    from skedit.sft.modelops import load_model

    if config.threads:
        torch.set_num_threads(config.threads)
    out_dir = Path(out_dir)
    earlier = carried_rows(model_path)
    check_replay_topk(model_path, config, earlier)
    batch_rows = list(examples)
    examples = with_replay(batch_rows, earlier, config.replay, config.seed)
    model, tokenizer = load_model(model_path)
    teacher = _kd_teacher(model, tokenizer, config, model_path, teacher_path)
    trainer, model = build_trainer(
        model,
        tokenizer,
        examples,
        config,
        out_dir / CHECKPOINTS,
        teacher=teacher,
        callbacks=callbacks,
    )
    n_train = trainable_parameters(model)
    resume_from = last_checkpoint(out_dir) if resume else None
    if resume_from:
        import sys

        print(f"skedit: resuming from {resume_from}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    model.train()
    trainer.train(resume_from_checkpoint=resume_from)
    end_training(trainer, model)
    seconds = time.perf_counter() - start
    history = list(trainer.state.log_history)
    steps = int(trainer.state.global_step)
    model = _finish(model)
    if not trainer.accelerator.is_main_process:  # under accelerate, one process saves
        return TrainResult(
            model_dir=None,
            train_seconds=seconds,
            trainable_parameters=n_train,
            log_history=history,
            steps=steps,
            examples=len(examples),
            resumed_from=resume_from,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    atomic_write_json(out_dir / "training_log.json", history)
    atomic_write_json(out_dir / "train_config.json", config.to_dict())
    save_loss_curve(history, out_dir / "loss.png", title=f"{config.method} / {config.scope}")
    grown = grow_manifest(model_path, manifest or {}, batch_rows, config, steps)
    atomic_write_json(out_dir / MANIFEST, grown)
    from skedit.prompts.io import write_jsonl

    write_jsonl(out_dir / CARRIED_ROWS, [*earlier, *batch_rows])
    shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
    return TrainResult(
        model_dir=out_dir,
        train_seconds=seconds,
        trainable_parameters=n_train,
        log_history=history,
        steps=steps,
        examples=len(examples),
        resumed_from=resume_from,
    )


def read_manifest(model_path: str | os.PathLike) -> dict[str, Any] | None:
    f = Path(model_path) / MANIFEST
    return json.loads(f.read_text()) if f.is_file() else None


def grow_manifest(
    model_path, batch: dict[str, Any], examples, config: TrainConfig, steps: int
) -> dict[str, Any]:
    """The base's manifest (if it is an earlier student) plus one entry for this batch."""
    prev = read_manifest(model_path) or {}
    edit_ids = list(
        batch.get("edit_ids")
        or dict.fromkeys(e.edit_id for e in examples if e.edit_id and e.kind != "locality")
    )
    prompt_ids = list(batch.get("prompt_ids") or [])
    entry = {
        **batch,
        "edit_ids": edit_ids,
        "prompt_ids": prompt_ids,
        "method": config.method,
        "scope": config.scope,
        "steps": steps,
        "examples": len(examples),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    batches = [*prev.get("batches", []), entry]
    return {
        "base_model": prev.get("base_model") or str(model_path),
        "parent_model": str(model_path),
        "edit_ids": list(dict.fromkeys(i for b in batches for i in b["edit_ids"])),
        "prompt_ids": list(dict.fromkeys(i for b in batches for i in b["prompt_ids"])),
        "batches": batches,
    }


def save_loss_curve(
    history: list[dict[str, Any]], path: str | os.PathLike, *, title: str = ""
) -> Path | None:
    """A PNG of the training loss (and KL when logged) against the step."""
    pts = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p[0] for p in pts], [p[1] for p in pts], label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log" if all(p[1] > 0 for p in pts) else "linear")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
