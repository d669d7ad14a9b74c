"""A run directory: its files, a lock so two runs never share it, and stage records.

A stage is recorded as finished (atomically, in ``stages.json``) only after its outputs are
written, together with a hash of its inputs. A rerun skips a finished stage whose inputs are
unchanged, reruns it when they changed, and ``--force`` reruns it regardless.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from skedit.prompts import runfiles as F
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import atomic_write_json

STAGES = ("agents", "teacher", "train", "eval")


def hash_inputs(*parts: Any, files: Iterable[str | os.PathLike] = ()) -> str:
    """A hash of values and of file contents (files that do not exist hash as absent)."""
    h = hashlib.sha256()
    h.update(json.dumps(parts, sort_keys=True, default=str).encode())
    for f in files:
        p = Path(f)
        h.update(str(p.name).encode())
        if p.is_file():
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(b"<absent>")
    return h.hexdigest()[:16]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDir:
    """Paths and bookkeeping of ``runs/<run-id>/``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    # files -----------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / F.CONFIG

    @property
    def edits(self) -> Path:
        return self.path / F.EDITS

    @property
    def probes(self) -> Path:
        return self.path / F.PROBES

    @property
    def prompts(self) -> Path:
        return self.path / F.PROMPTS

    @property
    def transfer(self) -> Path:
        return self.path / F.TRANSFER

    @property
    def model(self) -> Path:
        return self.path / F.MODEL

    @property
    def metrics(self) -> Path:
        return self.path / F.METRICS

    @property
    def stages_file(self) -> Path:
        return self.path / F.STAGES

    @property
    def lock_file(self) -> Path:
        return self.path / F.LOCK

    @property
    def options_file(self) -> Path:
        return self.path / F.OPTIONS

    def options(self) -> dict[str, Any]:
        """How the run was started (e.g. ``auto_approve``), so ``--resume`` continues alike."""
        if not self.options_file.exists():
            return {}
        return json.loads(self.options_file.read_text(encoding="utf-8"))

    def save_options(self, **options: Any) -> None:
        atomic_write_json(self.options_file, {**self.options(), **options})

    # lock ------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the directory's lock; a stale lock (its process is gone) is taken over."""
        self.path.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.lock_file.read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    pid = -1
                if pid > 0 and pid != os.getpid() and _pid_alive(pid):
                    raise SkeditError(
                        f"another skedit process (pid {pid}) is using this run directory",
                        file=str(self.path),
                        hint="wait for it to finish, or use another --run directory",
                    ) from None
                self.lock_file.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            return
        raise SkeditError("could not take the run directory's lock", file=str(self.lock_file))

    def release(self) -> None:
        try:
            if int(self.lock_file.read_text().split()[0]) == os.getpid():
                self.lock_file.unlink()
        except (OSError, ValueError, IndexError):
            pass

    def __enter__(self) -> RunDir:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # stage records -------------------------------------------------------------------------
    def stages(self) -> dict[str, Any]:
        if not self.stages_file.exists():
            return {}
        return json.loads(self.stages_file.read_text(encoding="utf-8"))

    def is_done(self, stage: str, input_hash: str) -> bool:
        rec = self.stages().get(stage)
        return bool(rec and rec.get("done") and rec.get("input_hash") == input_hash)

    def mark(self, stage: str, **fields: Any) -> None:
        data = self.stages()
        data[stage] = {**data.get(stage, {}), **fields}
        atomic_write_json(self.stages_file, data)

    def invalidate_from(self, stage: str) -> None:
        """Forget ``stage`` and every stage after it (their inputs are about to change)."""
        data = self.stages()
        for s in STAGES[STAGES.index(stage) :]:
            data.pop(s, None)
        atomic_write_json(self.stages_file, data)
