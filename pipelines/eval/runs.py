"""What the harness reads from a run directory (``load_run``), and its held-out text."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from skedit.pipelines.eval.hooks import EvalHook
from skedit.pipelines.run.rundir import RunDir
from skedit.prompts import APPROVED
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import read_jsonl
from skedit.prompts.render import context_prefix
from skedit.prompts.schema import DensePrompt, Edit, Probe


@dataclass
class RunData:
    """What ``skedit eval`` reads from a run directory."""

    run_dir: Path
    config: dict
    base_path: str
    edits: list[Edit]
    probes: list[Probe]
    prompts: list[DensePrompt]

    @property
    def prefixes(self) -> dict[str, str]:
        """edit id → the approved dense prompt laid out as context (the PROMPT baseline)."""
        out = {}
        for dp in self.prompts:
            if dp.status in APPROVED:
                for eid in dp.edit_ids:
                    out[eid] = context_prefix(dp.text)
        return out

    @property
    def relations(self) -> dict[str, str | None]:
        return {e.id: e.relation for e in self.edits}

    @property
    def student_dir(self) -> Path:
        return self.run_dir / "model"


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read config, edits, probes and prompts of a run; errors name the missing file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SkeditError(
            "run directory not found",
            file=str(run_dir),
            hint="give the DIR that `skedit agents run` wrote",
        )
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise SkeditError(
            "missing config.yaml", file=str(cfg_path), hint="run `skedit agents run` first"
        )
    try:
        config = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SkeditError(f"not valid YAML: {exc}", file=str(cfg_path)) from exc
    base = config.get("model")
    if not base:
        raise SkeditError(
            "no base model path",
            file=str(cfg_path),
            field="model",
            hint="add `model: <path of the base model>`",
        )
    edits_path = RunDir(run_dir).edits
    if not edits_path.exists():
        raise SkeditError("missing edits.jsonl", file=str(edits_path))
    edits = read_jsonl(edits_path, Edit)
    probes_path = RunDir(run_dir).probes
    probes = (
        read_jsonl(probes_path, Probe)
        if probes_path.exists()
        else [p for e in edits for p in e.probes()]
    )
    prompts_path = RunDir(run_dir).prompts
    prompts = read_jsonl(prompts_path, DensePrompt) if prompts_path.exists() else []
    return RunData(run_dir, config, str(base), edits, probes, prompts)


def heldout_texts(
    data: RunData,
    heldout: str | os.PathLike | Sequence[str] | None,
    *,
    hook: EvalHook | None = None,
    limit: int = 200,
) -> tuple[list[str], str]:
    """Held-out text for perplexity and retention: a file (one passage per line), the
    ``hook``'s held-out text (the synthetic world's), else none. Returns (texts, source)."""
    if heldout is not None and not isinstance(heldout, str | os.PathLike):
        return list(heldout)[:limit], "given texts"
    if heldout is not None:
        path = Path(heldout)
        if not path.is_file():
            raise SkeditError("held-out text file not found", file=str(path), field="--heldout")
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return lines[:limit], str(path)
    if hook is not None and hook.heldout is not None:
        return list(hook.heldout())[:limit], hook.heldout_source
    return [], "none (give --heldout FILE for perplexity and retention)"


def training_for(data: RunData, student: str) -> dict:
    """The ``training:`` settings a student was trained with; ``skedit-kd`` → method kd."""
    training = dict(data.config.get("training") or {})
    suffix = student.removeprefix("skedit-")
    if suffix in ("sft", "kd"):
        training["method"] = suffix
    return training


def trained_prompts(run_dir: str | os.PathLike) -> set[str]:
    """The prompts of a run's transfer set (``DIR/transfer.jsonl``): what the student trained
    on; empty before the teacher stage wrote it."""
    from skedit.prompts.io import read_jsonl
    from skedit.prompts.schema import TransferExample

    transfer = RunDir(run_dir).transfer
    return {t.prompt for t in read_jsonl(transfer, TransferExample)} if transfer.exists() else set()
