"""A dataset file as bytes and decoded text, before any parsing: the raw record type, whether
the file can be read, its UTF-8 errors with their line and offset, a progress bar over its bytes,
and its text in chunks. The parsers are in ``readers``.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skedit.prompts.errors import SkeditError

CHUNK_BYTES = 1 << 20
MAX_RECORD_BYTES = 32 << 20  # no dataset record is near this; a bigger one is junk


class Truncated(SkeditError):
    """The file ends in the middle of the JSON: the records before the cut are whole."""


@dataclass
class RawRecord:
    record: int  # JSON: 0-based index in the list; JSONL/CSV: 1-based line number
    line: int  # line the record starts on (1-based)
    data: Any = None
    error: str | None = None  # set when the record itself could not be parsed
    field: str | None = None


def type_name(value: Any) -> str:
    """How a JSON value's type reads in a message: 'a string', 'a list', 'null'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


class Progress:
    """Bytes read, for a tqdm bar on big files (no-op when disabled)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=path.stat().st_size,
                unit="B",
                unit_scale=True,
                desc=f"reading {path.name}",
                leave=False,
            )

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def check_readable(path: Path) -> None:
    """Existence, kind and emptiness: the failures that need no parsing."""
    if not path.exists():
        raise SkeditError("file not found", file=str(path), hint="check the path")
    if path.is_dir():
        raise SkeditError("is a folder, not a dataset file", file=str(path))
    if path.stat().st_size == 0:
        raise SkeditError(
            "the file is empty", file=str(path), hint="expected a JSON list, JSONL or CSV of edits"
        )
    if not os.access(path, os.R_OK):
        raise SkeditError("cannot read the file (permission denied)", file=str(path))


def _bad_utf8(path: Path, offset: int, line: int, exc: UnicodeDecodeError) -> SkeditError:
    byte = exc.object[exc.start : exc.start + 1].hex()
    return SkeditError(
        f"not UTF-8 text: byte 0x{byte} at byte offset {offset} (line {line})",
        file=str(path),
        hint="save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
    )


def first_bad_utf8(path: Path) -> SkeditError:
    """The error for the file's first byte that is not UTF-8, with its line and offset (a line
    is decoded on its own: a newline never falls inside a multi-byte character)."""
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                skipped = 3 if lineno == 1 and raw.startswith(codecs.BOM_UTF8) else 0
                return _bad_utf8(path, offset + exc.start + skipped, lineno, exc)
            offset += len(raw)
    return SkeditError("not UTF-8 text", file=str(path))


def text_chunks(path: Path, progress: Progress) -> Iterator[str]:
    """Decoded UTF-8 text in chunks; a BOM is dropped; bad bytes are a clear error."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    offset = 0
    lines = 1
    with open(path, "rb") as fh:
        while True:
            raw = fh.read(CHUNK_BYTES)
            progress.update(len(raw))
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                where = offset + exc.start
                raise _bad_utf8(path, where, lines + raw.count(b"\n", 0, exc.start), exc) from None
            offset += len(raw)
            lines += raw.count(b"\n")
            if text:
                yield text
            if not raw:
                return
