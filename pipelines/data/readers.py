"""Reading raw records out of dataset files, streamed: JSON lists, JSONL, CSV.

A file is never read whole: a JSON list is parsed one element at a time with
``json.JSONDecoder.raw_decode`` over a growing buffer of decoded chunks, JSONL and CSV line by
line. Memory is bounded by the largest single record (``MAX_RECORD_BYTES``), so a 100 MB file
(or 100 MB of junk) costs neither memory nor a traceback.

Each raw record carries where it came from: ``record`` is its 0-based index in a JSON list, or
its 1-based line number in JSONL/CSV; ``line`` is the line it starts on. A record that cannot
be read at all (a bad JSONL line) comes out as a :class:`RawRecord` with ``error`` set, so that
``--skip-invalid`` can pass over it; a file that cannot be read goes up as ``SkeditError``.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from skedit.pipelines.data.rawfile import (
    CHUNK_BYTES,
    MAX_RECORD_BYTES,
    Progress,
    RawRecord,
    Truncated,
    check_readable,
    first_bad_utf8,
    mib,
    text_chunks,
)
from skedit.prompts.errors import SkeditError

Container = Literal["json", "jsonl", "csv"]

_WS = " \t\r\n"
_DECODER = json.JSONDecoder()


def sniff(path: Path, limit: int = 1 << 16) -> tuple[Container, Any]:
    """Which container the file is, and its first record (or CSV header row) to tell the format.

    Reads at most ``limit`` bytes beyond the first record.
    """
    check_readable(path)
    if path.suffix.lower() in {".csv", ".tsv"}:
        return "csv", None
    head = b""
    with open(path, "rb") as fh:
        head = fh.read(limit)
    text = head.decode("utf-8-sig", errors="replace").lstrip(_WS)
    if not text:
        raise SkeditError("the file holds only whitespace", file=str(path))
    if text[0] == "[":
        first = next(iter_json(path, progress=False, limit_records=1), None)
        if first is None:
            raise SkeditError("the JSON list is empty: no records", file=str(path))
        return "json", first.data
    if text[0] == "{":
        with open(path, "rb") as fh:
            raw = fh.readline(MAX_RECORD_BYTES)
            while raw and not raw.strip():  # skip blank lines
                raw = fh.readline(MAX_RECORD_BYTES)
        first_line = raw.decode("utf-8-sig", errors="replace")
        try:
            obj, end = _DECODER.raw_decode(first_line)
        except RecursionError:
            raise SkeditError(_TOO_DEEP.format(where="line 1"), file=str(path)) from None
        except json.JSONDecodeError:
            # not one object per line: a single (pretty-printed) JSON object
            first = next(iter_json(path, progress=False, limit_records=1), None)
            return "json", first.data if first else None
        except ValueError as exc:  # e.g. a number of more than 4300 digits
            raise SkeditError(f"line 1: unreadable JSON value: {exc}", file=str(path)) from None
        if first_line[end:].strip(_WS):
            raise SkeditError(
                "line 1 holds more than one JSON value",
                file=str(path),
                hint="JSONL needs exactly one JSON object per line",
            )
        return "jsonl", obj
    if path.suffix.lower() in {".json", ".jsonl"}:
        raise SkeditError(
            f"not JSON: the file starts with {text[:20]!r}",
            file=str(path),
            hint="a JSON dataset starts with '[' (a list of records) or '{' (JSONL)",
        )
    return "csv", None


_TOO_DEEP = (
    "{where} is nested too deeply to be a dataset record (lists or objects inside each other)"
)
_CUT_HINT = (
    "re-download the file, or write the complete records out with: skedit data convert FILE "
    "OUT.jsonl --skip-invalid"
)


class _JsonStream:
    """A window on decoded JSON text: ``buf[pos:]`` is what is not consumed yet."""

    def __init__(self, path: Path, bar: Progress) -> None:
        self.path = path
        self.chunks = text_chunks(path, bar)
        self.buf = ""
        self.pos = 0
        self.line = 1  # line number at ``pos``
        self.eof = False

    def more(self) -> bool:
        """Read more text; False at the end of the file."""
        if self.eof:
            return False
        # read at least as much again as we hold, so a large record costs O(n), not O(n^2)
        want = max(CHUNK_BYTES, len(self.buf) - self.pos)
        parts = [self.buf[self.pos :]]
        got = 0
        for chunk in self.chunks:
            parts.append(chunk)
            got += len(chunk)
            if got >= want:
                break
        else:
            self.eof = True
        self.buf, self.pos = "".join(parts), 0
        return got > 0

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end of the file)."""
        while True:
            start = self.pos
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            self.line += self.buf.count("\n", start, self.pos)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def value(self, index: int) -> Any:
        """Decode the JSON value at ``pos`` (record ``index``), reading more as needed."""
        start_line = self.line
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except RecursionError:
                where = f"record {index} (line {start_line})"
                raise self.fail(_TOO_DEEP.format(where=where), index) from None
            except json.JSONDecodeError as exc:
                incomplete = exc.msg.startswith("Unterminated string") or exc.pos >= len(
                    self.buf.rstrip(_WS)
                )
                if incomplete and self.more():
                    if len(self.buf) > MAX_RECORD_BYTES:
                        raise self.fail(
                            f"record {index} (line {start_line}) is larger than "
                            f"{mib(MAX_RECORD_BYTES)}: this is not a dataset of edits",
                            index,
                        ) from None
                    continue
                if incomplete:
                    raise Truncated(
                        f"truncated JSON: the file ends inside this record (line {start_line}); "
                        f"{index} complete records before it",
                        file=str(self.path),
                        record=index,
                        hint=_CUT_HINT,
                    ) from None
                line = self.line + self.buf.count("\n", self.pos, exc.pos)
                col = exc.pos - (self.buf.rfind("\n", 0, exc.pos) + 1) + 1
                raise self.fail(
                    f"invalid JSON in record {index} at line {line}, column {col}: {exc.msg}",
                    index,
                ) from None
            except ValueError as exc:  # e.g. a number of more than 4300 digits
                raise self.fail(
                    f"unreadable JSON value in record {index} (line {start_line}): {exc}", index
                ) from None
            if end >= len(self.buf) and self.more():
                continue  # a value cut at the chunk edge (a number): decode it whole
            self.line += self.buf.count("\n", self.pos, end)
            self.pos = end
            return value

    def fail(self, msg: str, index: int | None = None, hint: str | None = None) -> SkeditError:
        return SkeditError(msg, file=str(self.path), record=index, hint=hint)


def iter_json(
    path: Path, *, progress: bool = False, limit_records: int | None = None
) -> Iterator[RawRecord]:
    """The elements of a top-level JSON list (or a single top-level object), streamed."""
    bar = Progress(path, progress)
    js = _JsonStream(path, bar)
    try:
        first = js.peek()
        if not first:
            raise js.fail("the file holds only whitespace")
        if first == "[":
            js.pos += 1
            if js.peek() == "]":  # an empty list: nothing to yield
                js.pos += 1
            else:
                yield from _list_items(js, limit_records)
        else:
            yield RawRecord(record=0, line=js.line, data=js.value(0))
        if limit_records is None and js.peek():
            raise js.fail(
                f"extra data after the end of the JSON {'list' if first == '[' else 'object'} "
                f"at line {js.line}",
                hint="a JSON dataset is one list of records; for one object per line use .jsonl",
            )
    finally:
        bar.close()


def _list_items(js: _JsonStream, limit_records: int | None) -> Iterator[RawRecord]:
    """The items of a JSON list whose '[' was consumed; consumes the closing ']'."""
    index = 0
    while True:
        if not js.peek():
            raise Truncated(
                f"truncated JSON: the file ends after {index} complete records; "
                "the closing ']' is missing",
                file=str(js.path),
                hint=_CUT_HINT,
            )
        line = js.line
        yield RawRecord(record=index, line=line, data=js.value(index))
        index += 1
        if limit_records is not None and index >= limit_records:
            return
        sep = js.peek()
        if sep == ",":
            js.pos += 1
        elif sep == "]":
            js.pos += 1
            return
        elif not sep:
            raise Truncated(
                f"truncated JSON: the file ends after record {index - 1}; "
                "the closing ']' is missing",
                file=str(js.path),
                hint=_CUT_HINT,
            )
        else:
            raise js.fail(
                f"invalid JSON after record {index - 1} at line {js.line}: "
                f"expected ',' or ']', found {sep!r}"
            )


def iter_jsonl(path: Path, *, progress: bool = False) -> Iterator[RawRecord]:
    """One JSON value per line; blank lines are skipped; a bad line is a record error."""
    bar = Progress(path, progress)
    try:
        with open(path, "rb") as fh:
            lineno = 0
            while True:
                raw = fh.readline(MAX_RECORD_BYTES + 1)
                if not raw:
                    return
                lineno += 1
                bar.update(len(raw))
                if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
                    while raw and not raw.endswith(b"\n"):  # drop the rest of the line
                        raw = fh.readline(CHUNK_BYTES)
                        bar.update(len(raw))
                    yield RawRecord(
                        lineno,
                        lineno,
                        error=f"line longer than {mib(MAX_RECORD_BYTES)}: not a record",
                    )
                    continue
                if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield RawRecord(
                        lineno,
                        lineno,
                        error=f"not UTF-8 text: byte 0x{raw[exc.start : exc.start + 1].hex()} "
                        f"at column {exc.start + 1}",
                    )
                    continue
                if not text.strip():
                    continue
                text = text.rstrip("\r\n")
                try:
                    value = json.loads(text)
                except RecursionError:
                    yield RawRecord(lineno, lineno, error=_TOO_DEEP.format(where="the line"))
                    continue
                except json.JSONDecodeError as exc:
                    yield RawRecord(
                        lineno,
                        lineno,
                        error=f"invalid JSON at column {exc.colno}: {exc.msg}"
                        + (" (truncated line?)" if exc.pos >= len(text.rstrip()) else ""),
                    )
                    continue
                except ValueError as exc:  # e.g. a number of more than 4300 digits
                    yield RawRecord(lineno, lineno, error=f"unreadable JSON value: {exc}")
                    continue
                yield RawRecord(lineno, lineno, data=value)
    finally:
        bar.close()


def iter_csv(path: Path, *, progress: bool = False) -> Iterator[RawRecord]:
    """CSV rows as lists of strings (the header row included: the caller decides)."""
    bar = Progress(path, progress)
    try:
        with open(path, "rb") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
            reader = csv.reader(text)
            while True:
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except UnicodeDecodeError:
                    # the wrapper decodes ahead in chunks: find the byte's line in the file
                    raise first_bad_utf8(path) from None
                except csv.Error as exc:
                    raise SkeditError(
                        f"unreadable CSV at line {reader.line_num}: {exc}", file=str(path)
                    ) from None
                bar.update(sum(len(c) + 1 for c in row))
                if not any(c.strip() for c in row):
                    continue
                yield RawRecord(start, start, data=row)
    finally:
        bar.close()
