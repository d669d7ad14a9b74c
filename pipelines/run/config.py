"""The resolved configuration of a run: one YAML file, every section checked.

Sections map onto the dataclasses that own them (``AgentsConfig`` in ``skedit.agents``,
``TrainConfig`` in ``skedit.sft``, ``EvalSettings`` here). An unknown key or a value of the wrong
type is an error that names the file and the key, so a typo never silently falls back to a
default.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from skedit.prompts.errors import SkeditError, reject_unknown_keys


@dataclasses.dataclass
class EvalSettings:
    """What ``skedit run`` measures after training (see ``skedit eval --help``)."""

    baselines: list[str] = dataclasses.field(
        default_factory=lambda: ["base", "prompt", "ft-m"],
        metadata={"help": "methods measured beside skedit, named as in `skedit eval --baselines`"},
    )
    sequential: int | None = dataclasses.field(
        default=None, metadata={"help": "edit in K sequential batches and re-measure after each"}
    )
    retention: int | None = dataclasses.field(
        default=None, metadata={"help": "steps of unrelated fine-tuning before re-measuring"}
    )
    probes_per_edit: int | None = dataclasses.field(
        default=None,
        metadata={
            "help": "score at most this many probes of each kind per edit (the first ones; "
            "unset = all): a real-model recipe generates dozens per edit for training"
        },
    )


@dataclasses.dataclass
class LaunchSettings:
    """How the train stage runs (see ``skedit sft --help``): where, and on how many processes.
    Not a training setting: results agree across launches up to floating-point noise, so a
    change here does not retrain a finished student."""

    launcher: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "inprocess or accelerate (default: accelerate when processes > 1 or an "
            "accelerate_config is named, else inprocess)"
        },
    )
    processes: int | None = dataclasses.field(
        default=None,
        metadata={
            "help": "data-parallel processes (GPUs, or CPU processes on gloo where there is no "
            "GPU; default: one on CPU, every GPU under accelerate); training.batch_size stays "
            "the global micro-batch, split across them"
        },
    )
    accelerate_config: str | None = dataclasses.field(
        default=None,
        metadata={"help": "multi_gpu, zero1/2/3, fsdp, fsdp1, fsdp2, or an accelerate YAML file"},
    )


def _section_classes() -> dict[str, type]:
    from skedit.agents.config import AgentsConfig
    from skedit.sft.config import TrainConfig

    return {
        "agents": AgentsConfig,
        "training": TrainConfig,
        "evaluation": EvalSettings,
        "launch": LaunchSettings,
    }


# a recipe's hyper-parameters for the baselines the evaluation runs (names as in --baselines);
# checked by the editor when it runs (``editors.baselines.hparams_for``)
EDITOR_SECTIONS = ("ft-l", "ft-m", "lora", "rome", "memit", "alphaedit")

TOP_LEVEL = {
    "model": "path or hub id of the base model (default: the synthetic world model)",
    "teacher": "path of a different teacher model (default: the base model)",
    "seed": "random seed for every stage",
}


@dataclasses.dataclass
class RunConfig:
    model: str | None = None
    teacher: str | None = None
    seed: int = 0
    sections: dict[str, Any] = dataclasses.field(default_factory=dict)
    editors: dict[str, dict] = dataclasses.field(default_factory=dict)

    def section(self, name: str):
        return self.sections[name]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "teacher": self.teacher, "seed": self.seed}
        for name, obj in self.sections.items():
            out[name] = dataclasses.asdict(obj)
        out.update({k: dict(v) for k, v in self.editors.items()})
        return out


def _build_section(cls: type, data: Any, *, source: str, name: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SkeditError(
            f"section '{name}' must be a mapping of keys to values, got {type(data).__name__}",
            file=source,
            field=name,
        )
    reject_unknown_keys(
        data,
        {f.name for f in dataclasses.fields(cls)},
        what=f"key(s) in '{name}'",
        file=source,
        field_prefix=name,
    )
    defaults = dataclasses.asdict(cls())
    merged = {**defaults, **data}
    try:
        return TypeAdapter(cls).validate_python(merged, strict=False)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise SkeditError(
            f"wrong value for '{name}.{loc}': {err['msg']} (got {err.get('input')!r})",
            file=source,
            field=f"{name}.{loc}",
        ) from None


def parse_config(data: dict[str, Any] | None, *, source: str = "<config>") -> RunConfig:
    """Check a config mapping (from YAML or built in code) and fill in every default."""
    data = dict(data or {})
    classes = _section_classes()
    for key in data:
        if key not in classes and key not in TOP_LEVEL and key not in EDITOR_SECTIONS:
            raise SkeditError(
                f"unknown key '{key}'",
                file=source,
                field=key,
                hint=f"top-level keys: {', '.join([*TOP_LEVEL, *classes, *EDITOR_SECTIONS])}",
            )
    editors = {}
    for key in EDITOR_SECTIONS:
        if key in data and data[key] is not None:
            if not isinstance(data[key], dict):
                raise SkeditError(
                    f"section '{key}' must be a mapping of the baseline's hyper-parameters",
                    file=source,
                    field=key,
                )
            editors[key] = dict(data[key])
    for key in ("model", "teacher"):
        if data.get(key) is not None and not isinstance(data[key], str | os.PathLike):
            raise SkeditError(f"'{key}' must be a path (a string)", file=source, field=key)
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SkeditError(f"'seed' must be an integer, got {seed!r}", file=source, field="seed")
    sections = {
        name: _build_section(cls, data.get(name), source=source, name=name)
        for name, cls in classes.items()
    }
    model = str(data["model"]) if data.get("model") else None
    teacher = str(data["teacher"]) if data.get("teacher") else None
    return RunConfig(model=model, teacher=teacher, seed=seed, sections=sections, editors=editors)


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read a recipe or a run's ``config.yaml``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SkeditError("config file not found", file=str(path)) from None
    except UnicodeDecodeError:
        raise SkeditError("config file is not UTF-8 text", file=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark else None
        raise SkeditError(f"not valid YAML: {exc}", file=str(path), record=line) from None
    if data is not None and not isinstance(data, dict):
        raise SkeditError("a config file must be a YAML mapping", file=str(path))
    return parse_config(data, source=str(path))


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
