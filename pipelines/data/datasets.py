"""Load knowledge-editing datasets from local files into ``Edit``s, format detected or named.

Formats: ``knowedit`` (EasyEdit's KnowEdit: ZsRE, WikiData_recent, WikiData_counterfact,
WikiBio), ``counterfact`` (ROME), ``zsre`` (the original MEND/ROME eval), ``mquake``,
``jsonl`` (skedit's own, one ``Edit`` per line) and ``csv``. The record-level formats may be
stored as a JSON list or as JSONL. Files are streamed (see ``formats_io``).

A record that cannot become an edit (missing field, wrong type, bad JSONL line) stops the load
with an error naming it; ``skip_invalid=True`` skips it, and any edit whose own content is
wrong (empty target, subject not in its prompt), and says how many were skipped and why.
Problems between edits (duplicate ids, conflicting targets) are always reported, never
resolved: no edit is dropped or merged because of them.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from skedit.pipelines.data import readers as fio
from skedit.pipelines.data.counterfact import (
    COUNTERFACT_FIELDS,
    COUNTERFACT_KNOWN_UNUSED,
    MQUAKE_FIELDS,
    MQUAKE_KNOWN_UNUSED,
    counterfact_edits,
    mquake_edits,
)
from skedit.pipelines.data.fields import RecordError
from skedit.pipelines.data.knowedit import (
    KNOWEDIT_FIELDS,
    KNOWEDIT_KNOWN_UNUSED,
    ZSRE_FIELDS,
    ZSRE_KNOWN_UNUSED,
    knowedit_edits,
    zsre_edits,
)
from skedit.pipelines.data.skedit_format import (
    EDIT_FIELDS,
    csv_columns,
    csv_edits,
    jsonl_edits,
    record_error,
)
from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import Edit
from skedit.prompts.validate import Problem, check_batch, check_edit

FORMATS = ("knowedit", "counterfact", "zsre", "mquake", "jsonl", "csv")
PROGRESS_MIN_BYTES = 8 << 20  # show a progress bar from this size on

# format -> (converter: (raw record, source) -> [(edit, relation id)], fields used, known unused)
Converter = Callable[[Any, str], list[tuple[Edit, str]]]


def _plain(fn: Callable[[Any, str], list[Edit]]) -> Converter:
    return lambda rec, source: [(e, "") for e in fn(rec, source)]


_SPECS: dict[str, tuple[Converter, set[str], set[str]]] = {
    "knowedit": (_plain(knowedit_edits), KNOWEDIT_FIELDS, KNOWEDIT_KNOWN_UNUSED),
    "counterfact": (counterfact_edits, COUNTERFACT_FIELDS, COUNTERFACT_KNOWN_UNUSED),
    "zsre": (_plain(zsre_edits), ZSRE_FIELDS, ZSRE_KNOWN_UNUSED),
    "mquake": (mquake_edits, MQUAKE_FIELDS, MQUAKE_KNOWN_UNUSED),
    "jsonl": (_plain(jsonl_edits), EDIT_FIELDS, set()),
}


@dataclass
class LoadResult:
    """What a dataset file gave: its edits, the problems found, how many records were skipped."""

    edits: list[Edit]
    problems: list[Problem]
    format: str
    skipped: int = 0
    records: int = 0  # records read (valid or not)
    container: str = ""  # "json", "jsonl" or "csv"
    unused_fields: dict[str, int] = field(default_factory=dict)  # field -> records having it
    invalid: list[Problem] = field(default_factory=list)  # why records were skipped
    known_fields: set[str] = field(default_factory=set)  # the format's fields, used or not

    @property
    def unknown_fields(self) -> dict[str, int]:
        """Unused fields the format does not have: typos (``rephrase_promt``) or another format."""
        return {k: n for k, n in self.unused_fields.items() if k not in self.known_fields}

    @property
    def kept_problems(self) -> list[Problem]:
        """Problems of the loaded edits (not of skipped records)."""
        return self.problems[len(self.invalid) :]

    @property
    def ok(self) -> bool:
        return not self.problems


def format_of_record(rec: Any) -> str | None:
    """The format a record's keys say it is in, or ``None``."""
    if not isinstance(rec, dict):
        return None
    keys = set(rec)
    rw = rec.get("requested_rewrite")
    if isinstance(rw, list):
        return "mquake"
    if isinstance(rw, dict):
        return "counterfact"
    if {"src", "alt"} <= keys:
        return "zsre"
    if {"text", "labels", "concept"} <= keys:
        return "knowedit"
    if {"subject", "prompt"} <= keys or {"prompt", "target_new"} <= keys:
        nested = [rec.get(k) for k in ("portability", "locality")]
        skedit_like = keys <= EDIT_FIELDS and not any(isinstance(v, dict) for v in nested)
        if skedit_like and (keys & {"id", "kind", "rephrases", "source", "relation"}):
            return "jsonl"
        return "knowedit"
    return None


def _unknown_format(path: Path, rec: Any) -> SkeditError:
    keys = sorted(rec) if isinstance(rec, dict) else None
    what = (
        f"its first record has the fields {keys}" if keys else "its first record is not an object"
    )
    return SkeditError(
        f"cannot tell the dataset format: {what}",
        file=str(path),
        hint=f"pass --format, one of {', '.join(FORMATS)}; see `skedit data inspect --help`",
    )


def detect_format(path: str | os.PathLike) -> str:
    """``knowedit``, ``counterfact``, ``zsre``, ``mquake``, ``jsonl`` or ``csv``, from content.

    Raises ``SkeditError`` when the file is missing, empty, unreadable or in no known format.
    """
    path = Path(path)
    container, first = fio.sniff(path)
    if container == "csv":
        return "csv"
    fmt = format_of_record(first)
    if fmt is None:
        raise _unknown_format(path, first)
    plain = isinstance(first, dict) and set(first) <= EDIT_FIELDS
    if container == "jsonl" and fmt == "knowedit" and path.suffix.lower() == ".jsonl" and plain:
        return "jsonl"  # plain {subject, prompt, target_new} lines: skedit's own format
    return fmt


def _raw_records(path: Path, container: str, progress: bool) -> Iterator[fio.RawRecord]:
    if container == "json":
        return fio.iter_json(path, progress=progress)
    if container == "jsonl":
        return fio.iter_jsonl(path, progress=progress)
    return fio.iter_csv(path, progress=progress)


def _records_until_cut(
    path: Path, container: str, progress: bool, skip_invalid: bool, invalid: list[Problem]
) -> Iterator[fio.RawRecord]:
    """The raw records; with ``skip_invalid`` a truncated JSON file yields its whole records
    and the cut is recorded as a problem."""
    try:
        yield from _raw_records(path, container, progress)
    except fio.Truncated as exc:
        if not skip_invalid:
            raise
        invalid.append(Problem(file=str(path), record=exc.record, message=exc.message))


class _CsvRows:
    """CSV rows to edits; the first row fixes the columns (a header, or positional)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] | None = None

    def is_header(self, raw: fio.RawRecord) -> bool:
        if self.columns is not None:
            return False
        try:
            self.columns, header = csv_columns(raw.data)
        except RecordError as exc:
            raise SkeditError(exc.message, file=str(self.path), field=exc.field) from None
        return header

    def edits(self, raw: fio.RawRecord, source: str) -> list[tuple[Edit, str]]:
        assert self.columns is not None
        return [(e, "") for e in csv_edits(raw.data, self.columns, source)]


_BAD_UNICODE = "text that is not valid Unicode (a lone surrogate escape such as \\ud800)"


def _convert(
    raw: fio.RawRecord, source: str, csv_rows: _CsvRows | None, convert: Converter | None
) -> list[tuple[Edit, str]]:
    """One raw record as (edit, relation id) pairs; RecordError when it cannot be one."""
    if raw.error is not None:
        raise RecordError(raw.field, raw.error)
    try:
        if csv_rows is not None:
            pairs = csv_rows.edits(raw, source)
        else:
            assert convert is not None
            pairs = convert(raw.data, source)
        for e, _ in pairs:
            e.model_dump_json()  # what convert will write must be writable (no lone surrogates)
    except ValidationError as exc:  # content the data model refuses
        raise record_error(exc) from None
    except PydanticSerializationError:
        raise RecordError(None, _BAD_UNICODE) from None
    return pairs


def _resolve_format(path: Path, format: str) -> tuple[str, str]:
    """(format, container), checking a named format against what the file holds."""
    if format not in ("auto", *FORMATS):
        raise SkeditError(f"unknown format {format!r}", hint=f"one of auto, {', '.join(FORMATS)}")
    container, first = fio.sniff(path)
    if format == "auto":
        return detect_format(path), container
    if format == "csv" and container != "csv":
        raise SkeditError(
            "--format csv given, but the file is JSON", file=str(path), hint="drop --format"
        )
    if format != "csv" and container == "csv":
        raise SkeditError(
            f"the file is not JSON, so it cannot be {format}", file=str(path), hint="--format csv?"
        )
    seen = format_of_record(first)
    if seen not in (None, format) and {format, seen} != {"knowedit", "jsonl"}:
        raise SkeditError(
            f"--format {format} given, but the records look like {seen}",
            file=str(path),
            hint=f"drop --format to detect it, or pass --format {seen}",
        )
    return format, container


def _invalid_records(path: Path, invalid: list[Problem]) -> InvalidRecords:
    first = invalid[0]
    more = f" ({len(invalid) - 1} more invalid records)" if len(invalid) > 1 else ""
    return InvalidRecords(
        f"{first.message}{more}",
        file=str(path),
        record=first.record if first.line != first.record else None,
        field=first.field,
        hint=f"fix the record, or write the valid ones out with: skedit data convert {path} "
        "OUT.jsonl --skip-invalid",
        problems=invalid,
        line=first.line,
    )


def load_edits(
    path: str | os.PathLike,
    format: str = "auto",
    skip_invalid: bool = False,
    *,
    progress: bool | None = None,
) -> LoadResult:
    """Read a dataset file into edits. See the module docstring for what is an error.

    ``progress``: a tqdm bar on stderr; by default only for files over 8 MiB.
    """
    path = Path(path)
    try:
        return _load(path, format, skip_invalid, progress)
    except OSError as exc:  # unreadable device, permissions, a file vanishing mid-read
        raise SkeditError(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None


def _load(path: Path, format: str, skip_invalid: bool, progress: bool | None) -> LoadResult:
    format, container = _resolve_format(path, format)
    if progress is None:
        progress = path.stat().st_size >= PROGRESS_MIN_BYTES
    edits: list[Edit] = []
    relations: list[str] = []  # per edit: relation id where the format has one
    where: list[int] = []  # per edit: its record (index or line)
    lines: dict[int, int] = {}  # record -> the line it starts on
    problems: list[Problem] = []  # of loaded edits
    invalid: list[Problem] = []  # of records that could not be loaded / were skipped
    unused: Counter[str] = Counter()
    skipped = records = 0
    csv_rows = _CsvRows(path) if format == "csv" else None
    convert, used_fields, known_unused = _SPECS.get(format, (None, set(), set()))

    for raw in _records_until_cut(path, container, progress, skip_invalid, invalid):
        if csv_rows is not None and csv_rows.is_header(raw):
            continue
        records += 1
        source = f"{path.name}:{raw.record}"
        try:
            pairs = _convert(raw, source, csv_rows, convert)
        except RecordError as exc:
            invalid.append(
                Problem(
                    file=str(path),
                    record=raw.record,
                    line=raw.line,
                    field=exc.field,
                    message=exc.message,
                )
            )
            skipped += 1
            continue
        if csv_rows is None:
            unused.update(k for k in raw.data if k not in used_fields)
        own = [p for e, _ in pairs for p in check_edit(e, raw.record)]
        for p in own:
            p.file, p.line = str(path), raw.line
        if own and skip_invalid:
            invalid.extend(own)
            skipped += 1
            continue
        problems.extend(own)
        for e, rel in pairs:
            edits.append(e)
            relations.append(rel)
            where.append(raw.record)
        lines[raw.record] = raw.line

    if invalid and not skip_invalid:
        raise _invalid_records(path, invalid)
    skipped += sum(1 for p in invalid if p.message.startswith("truncated JSON"))
    if not edits:
        why = f": all {skipped} records were invalid" if skipped else ""
        raise SkeditError(
            f"no edits in the file{why}",
            file=str(path),
            hint=invalid[0].render() if invalid else "the file has no records",
        )
    unit = "record" if container == "json" else "line"
    for p in check_batch(edits, relations, where=where, unit=unit):
        p.file, p.line = str(path), lines.get(p.record)  # type: ignore[arg-type]
        problems.append(p)
    return LoadResult(
        edits=edits,
        problems=invalid + problems,
        format=format,
        skipped=skipped,
        records=records,
        container=container,
        unused_fields=dict(unused),
        invalid=invalid,
        known_fields=used_fields | known_unused,
    )


class InvalidRecords(SkeditError):
    """Records that cannot become edits; ``problems`` lists every one of them."""

    def __init__(self, message: str, *, problems: list[Problem], line: int | None, **kw) -> None:
        self.problems = problems
        self.line = line
        super().__init__(message, **kw)

    def render(self) -> str:
        base = super().render()
        if self.record is None and self.line is not None and self.file:
            base = base.replace(f"{self.file}: ", f"{self.file}: line {self.line}: ", 1)
        return base
