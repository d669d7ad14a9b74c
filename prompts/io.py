"""Atomic file writes and JSONL of pydantic models: a crash never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# the mode ``open(path, "w")`` would give: mkstemp makes 0600 files, which other users of a
# shared run directory (and a reviewer's editor under another account) could not read
FILE_MODE = 0o666 & ~_umask()


def atomic_temp(path: Path) -> tuple[int, str]:
    """A temporary file next to ``path`` (for a write then ``os.replace``), with the mode a
    plain ``open`` would give it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, FILE_MODE)
    return fd, tmp


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = atomic_temp(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: object) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[BaseModel | dict]) -> Path:
    lines = []
    for row in rows:
        data = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
        lines.append(json.dumps(data, ensure_ascii=False))
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def iter_jsonl(path: str | os.PathLike, model: type[M]) -> Iterator[M]:
    """Read a JSONL file written by :func:`write_jsonl` (trusted, skedit's own files)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield model.model_validate_json(line)


def read_jsonl(path: str | os.PathLike, model: type[M]) -> list[M]:
    return list(iter_jsonl(path, model))
