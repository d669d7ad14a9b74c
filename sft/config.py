"""Training configuration: one dataclass whose fields carry help text and map onto SFTConfig.

The ``training:`` section of a recipe (``pipelines/recipes/*.yaml``) or of a run's
``config.yaml`` is read into :class:`TrainConfig`; :meth:`TrainConfig.to_sft_config` turns it
into TRL's ``SFTConfig`` for one output folder.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

from skedit.prompts.errors import SkeditError, reject_unknown_keys

Method = Literal["sft", "kd"]
Scope = Literal["full", "lora", "layers"]
KDTeacher = Literal["live", "topk"]
GateWords = Literal["all", "distinct"]


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainConfig:
    """How the student is trained on the transfer set (defaults: the world model on CPU)."""

    method: Method = _f(
        "kd",
        "sft: cross-entropy on the teacher's answers (TRL SFTTrainer); "
        "kd: forward KL to the teacher's next-token distributions on them.",
    )
    scope: Scope = _f(
        "full", "full: every weight; lora: peft adapters; layers: only --layers/--modules."
    )
    layers: list[int] = _f(
        [], "Decoder layer indices to train (scope layers or lora); empty = all."
    )
    modules: list[str] = _f(
        [],
        "Module name parts to train within those layers, e.g. mlp, "
        "self_attn, down_proj (scope layers); empty = the whole layer.",
    )
    epochs: float = _f(1.0, "Passes over the transfer set (ignored when max_steps > 0).")
    max_steps: int = _f(120, "Optimizer steps; > 0 overrides epochs.")
    learning_rate: float = _f(3e-4, "Peak learning rate (constant after warmup).")
    lr_scheduler: str = _f("constant_with_warmup", "transformers scheduler name.")
    warmup_steps: int = _f(5, "Linear warmup steps.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    optim: str = _f("adamw_torch", "transformers optimizer name (e.g. adamw_torch, sgd).")
    batch_size: int = _f(32, "Examples per device per micro-batch.")
    grad_accum: int = _f(
        1, "Gradient accumulation steps (loss is averaged, not summed, over them)."
    )
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.")
    kd_temperature: float = _f(1.0, "Softmax temperature of teacher and student in the KL (kd).")
    kl_weight: float = _f(1.0, "Weight of the KL term (kd).")
    ce_weight: float = _f(
        1.0,
        "Weight of cross-entropy on the teacher's greedy answer (kd); "
        "with a weak teacher it keeps the greedy answers (see bench_sft).",
    )
    locality_weight: float = _f(
        1.0,
        "Locality (unrelated) probes are repeated this many times in "
        "training (rounded, at least 1): they are what protects locality.",
    )
    locality_per_edit: bool = _f(
        False,
        "A locality probe that several edits of the transfer set ask (a well-known subject of "
        "a relation the batch moves more than once) is repeated once per edit that asks it "
        "(times locality_weight), not kept once: k edits that move one question are held by "
        "as many copies of its anchors as they have edits.",
    )
    edit_weight: float = _f(
        1.0,
        "An edit prompt's own rows are repeated this many times in training (rounded, at least "
        "1): the one row per edit that asks the requested rewrite, among ~35 rows per edit.",
    )
    topk: int = _f(
        0,
        "Store the teacher's top-k log-probs per completion token in "
        "transfer.jsonl (0 = off; kd_teacher topk needs it).",
    )
    kd_teacher: KDTeacher = _f(
        "live",
        "kd: live runs the teacher on the dense prompt at every step (a second copy of the "
        "model in memory unless LoRA); topk distils from the top-k stored in transfer.jsonl "
        "(needs topk > 0 and kd_temperature 1), with no teacher in training.",
    )
    known_targets: bool = _f(
        False,
        "Where a probe's answer is known (an edit prompt or rephrase: the new target) and the "
        "teacher reading the prompt answers otherwise, train on the known answer instead (with "
        "probability 1 in the stored top-k): a weak teacher's mistakes are not taught.",
    )
    known_prob: float = _f(
        0.9,
        "With known_targets: the least probability the known answer gets at each of its tokens "
        "in the stored top-k. A teacher that agrees less surely is mixed with the known answer "
        "(the rest of its distribution scaled down), so the student is taught the answer with a "
        "margin its greedy decoding keeps; 1.0 = the known answer alone.",
    )
    subject_gate: bool = _f(
        False,
        "kd: an edit's rows train the MLPs only through the tokens of its subject (elsewhere "
        "their outputs pass no gradient), so the change is keyed to the subject, as ROME and "
        "MEMIT key theirs, not to the question every subject of the relation shares; anchors "
        "and rows without a subject train through every token.",
    )
    subject_gate_words: GateWords = _f(
        "all",
        "With subject_gate: 'all' gates through every word of the subject; 'distinct' only "
        "through the words no other edited subject of the transfer set has (Howard of Howard "
        "Glacier when Kirkby Glacier is edited too; a subject with no such word keeps all of "
        "its words). Edits that share a word are learned most cheaply through it, and then reach "
        "every subject with that word.",
    )
    preserve_weight: float = _f(
        0.0,
        "Weight of a penalty on how much each trained linear map's output changes on the "
        "locality rows' tokens (MEMIT's preservation term, relative to the map's own output: "
        "skedit.sft.preserve), so an edit is written into directions the anchors do not use; "
        "0 = off. Not with scope lora.",
    )
    nullspace: float = _f(
        0.0,
        "AlphaEdit's null-space constraint applied to gradient training: after every optimizer "
        "step each trained linear map's change W - W0 is projected off the input directions "
        "that carry this share of the map's input energy over the locality rows' tokens and "
        "text sampled from the base model (skedit.sft.preserve), so the change acts only on "
        "what ordinary inputs hardly use; 0 = off, e.g. 0.9. Not with scope lora.",
    )
    nullspace_samples: int = _f(
        128, "With nullspace: texts (48 tokens each) sampled from the base model for it."
    )
    delta_scale: float = _f(
        1.0,
        "After training, the change of the trained weights is scaled by this: W0 + s (W - W0) "
        "(with LoRA, the adapters' update), WiSE-FT's interpolation between the base and the "
        "trained model. Below 1 the edits keep less margin and the answers training moved by "
        "accident, which moved least, go back first; 1 = the trained weights. Costs a copy of "
        "the trained weights (in CPU memory) during training.",
    )
    teacher_max_new_tokens: int = _f(8, "Tokens the teacher generates per probe.")
    teacher_batch_size: int = _f(64, "Probes per teacher generation batch.")
    save_steps: int = _f(50, "Write a resumable checkpoint every N steps.")
    save_total_limit: int = _f(2, "Checkpoints kept.")
    logging_steps: int = _f(1, "Log the loss every N steps.")
    seed: int = _f(0, "Seed for data order and initialisation of adapters.")
    replay: float = _f(
        1.0,
        "When the base is an earlier student: share of its earlier batches' transfer rows "
        "(kept in its transfer_rows.jsonl) trained again with this batch, so later batches do "
        "not overwrite earlier edits (0 = off).",
    )
    bf16: bool = _f(False, "bfloat16 mixed precision (GPU; forced off on CPU).")
    gradient_checkpointing: bool = _f(False, "Trade compute for memory (GPU; forced off on CPU).")
    lora_r: int = _f(16, "LoRA rank (scope lora).")
    lora_alpha: int = _f(32, "LoRA alpha (scope lora).")
    lora_dropout: float = _f(0.0, "LoRA dropout (scope lora).")
    lora_targets: list[str] = _f(
        ["gate_proj", "up_proj", "down_proj"], "Module names that get adapters (scope lora)."
    )
    threads: int = _f(0, "torch CPU threads (0 = leave torch's default).")

    def __post_init__(self) -> None:
        for name, kind in _field_types().items():
            value = getattr(self, name)
            if kind is bool and not isinstance(value, bool):
                # a quoted "false" in YAML is a non-empty string, which Python reads as true
                raise SkeditError(
                    f"{name} must be true or false, got {value!r}",
                    field=name,
                    hint="write true or false, unquoted",
                )
            if get_origin(kind) is Literal and value not in get_args(kind):
                *most, last = (repr(c) for c in get_args(kind))
                raise SkeditError(
                    f"unknown {name} {value!r}",
                    field=name,
                    hint=f"use {', '.join(most)} or {last}",
                )
        if self.scope == "layers" and not (self.layers or self.modules):
            raise SkeditError(
                "scope 'layers' needs layers or modules",
                field="layers",
                hint="e.g. --layers 2,3 --modules mlp",
            )
        if self.kd_teacher == "topk" and self.topk <= 0:
            raise SkeditError(
                "kd_teacher 'topk' distils from the teacher's stored top-k, but topk is 0",
                field="topk",
                hint="set topk (e.g. 32) so the teacher stage stores it",
            )
        if self.kd_teacher == "topk" and self.kd_temperature != 1.0:
            raise SkeditError(
                "the stored top-k are log-probs at temperature 1",
                field="kd_temperature",
                hint="use kd_temperature 1 with kd_teacher 'topk', or kd_teacher 'live'",
            )
        if not 0.0 < self.known_prob <= 1.0:
            raise SkeditError(
                f"known_prob must be in (0, 1], got {self.known_prob}",
                field="known_prob",
                hint="e.g. 0.9: the known answer gets at least 90% of each token's probability",
            )
        if self.known_targets and self.method == "kd" and self.kd_teacher == "live":
            raise SkeditError(
                "known_targets replaces wrong teacher answers in the transfer set, but a live "
                "teacher is distilled from its own distributions at every step",
                field="known_targets",
                hint="use kd_teacher 'topk' (with topk > 0) or method 'sft' with known_targets",
            )
        if self.subject_gate_words == "distinct" and not self.subject_gate:
            raise SkeditError(
                "subject_gate_words 'distinct' chooses the words the subject gate lets through, "
                "but subject_gate is off",
                field="subject_gate_words",
                hint="set subject_gate: true, or leave subject_gate_words at 'all'",
            )
        if self.subject_gate and self.method != "kd":
            raise SkeditError(
                "subject_gate shapes the distillation loss's gradient (method kd)",
                field="subject_gate",
                hint="use method 'kd', or subject_gate false",
            )
        if self.preserve_weight < 0:
            raise SkeditError(
                f"preserve_weight must be >= 0, got {self.preserve_weight}",
                field="preserve_weight",
                hint="e.g. 50; 0 turns the penalty off",
            )
        if self.preserve_weight and self.method != "kd":
            raise SkeditError(
                "preserve_weight is a term of the distillation loss (method kd)",
                field="preserve_weight",
                hint="use method 'kd', or preserve_weight 0",
            )
        if self.preserve_weight and self.scope == "lora":
            raise SkeditError(
                "preserve_weight penalises the change of the trained weights themselves; "
                "with LoRA they do not change until the adapters are merged",
                field="preserve_weight",
                hint="use scope 'layers' or 'full', or preserve_weight 0",
            )
        if not 0.0 <= self.nullspace < 1.0:
            raise SkeditError(
                f"nullspace must be in [0, 1), got {self.nullspace}",
                field="nullspace",
                hint="the share of input energy the change must leave alone, e.g. 0.9; 0 = off",
            )
        if self.nullspace_samples < 0:
            raise SkeditError(
                f"nullspace_samples must be >= 0, got {self.nullspace_samples}",
                field="nullspace_samples",
                hint="e.g. 128; 0 = the anchors' tokens only",
            )
        if self.nullspace and self.scope == "lora":
            raise SkeditError(
                "nullspace projects the change of the trained weights themselves; with LoRA "
                "they do not change until the adapters are merged",
                field="nullspace",
                hint="use scope 'layers' or 'full', or nullspace 0",
            )
        if not 0.0 < self.delta_scale <= 1.0:
            raise SkeditError(
                f"delta_scale must be in (0, 1], got {self.delta_scale}",
                field="delta_scale",
                hint="the share of the trained change to keep, e.g. 0.9; 1 = all of it",
            )
        if self.max_steps <= 0 and self.epochs <= 0:
            raise SkeditError("nothing to train: epochs and max_steps are both 0", field="epochs")

    @property
    def stored_topk(self) -> bool:
        """KD from the teacher's top-k stored in the transfer set: no teacher in training."""
        return self.method == "kd" and self.kd_teacher == "topk"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, source: str | None = None) -> TrainConfig:
        """Build from a ``training:`` mapping; unknown keys are an error that names them."""
        data = dict(data or {})
        reject_unknown_keys(
            data,
            {f.name for f in fields(cls)},
            what="training option(s)",
            file=source,
            field_prefix="training",
        )
        for key in ("layers", "modules", "lora_targets"):
            if isinstance(data.get(key), str):
                data[key] = [x for x in str(data[key]).replace(" ", "").split(",") if x]
        if data.get("layers"):
            data["layers"] = [int(x) for x in data["layers"]]
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_sft_config(self, out_dir: str | os.PathLike, *, use_cpu: bool | None = None):
        """TRL's ``SFTConfig`` for this run. bf16 and gradient checkpointing are off on CPU
        (SFTConfig turns both on by default)."""
        import torch
        from trl import SFTConfig

        if use_cpu is None:
            use_cpu = not torch.cuda.is_available()
        return SFTConfig(
            output_dir=str(out_dir),
            num_train_epochs=self.epochs,
            max_steps=self.max_steps if self.max_steps > 0 else -1,
            learning_rate=self.learning_rate,
            lr_scheduler_type=self.lr_scheduler,
            warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay,
            optim=self.optim,
            per_device_train_batch_size=self.batch_size,
            gradient_accumulation_steps=self.grad_accum,
            max_grad_norm=self.max_grad_norm,
            save_strategy="steps",
            save_steps=self.save_steps,
            save_total_limit=self.save_total_limit,
            logging_steps=self.logging_steps,
            seed=self.seed,
            data_seed=self.seed,
            bf16=self.bf16 and not use_cpu,
            activation_checkpointing=self.gradient_checkpointing and not use_cpu,
            use_cpu=use_cpu,
            report_to="none",
            remove_unused_columns=False,  # the teacher's prefix travels in extra columns
            dataset_kwargs={"skip_prepare_dataset": True},  # skedit tokenises (see train.py)
            disable_tqdm=False,
            dataloader_num_workers=0,
            save_only_model=False,
        )


@functools.cache
def _field_types() -> dict[str, Any]:
    """Each :class:`TrainConfig` field's type (``bool``, a ``Literal`` of its choices, ...)."""
    hints = get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}
