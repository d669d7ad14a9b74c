"""skedit's own formats: JSONL (one ``Edit`` per line) and CSV.

JSONL is what ``skedit data convert`` writes and every later stage reads: the ``Edit`` fields
exactly (see ``skedit.prompts.schema``). Hand-written lines may leave out everything but
``subject``, ``prompt`` and ``target_new``; without ``kind`` an edit is a ``modify`` when it
has a ``target_old`` and an ``insert`` otherwise.

CSV: a header row naming the columns (``subject,prompt,target_new`` required; ``target_old``,
``kind``, ``relation``, ``id`` optional) or no header and the columns
``subject,prompt,target_new[,target_old]`` in that order.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from skedit.pipelines.data.fields import RecordError, obj
from skedit.prompts.schema import Edit

EDIT_FIELDS = set(Edit.model_fields)
CSV_REQUIRED = ("subject", "prompt", "target_new")
CSV_OPTIONAL = ("target_old", "kind", "relation", "id")
CSV_POSITIONAL = ("subject", "prompt", "target_new", "target_old")
EDIT_KINDS = ("insert", "modify", "erase")


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else (f"{out}.{part}" if out else part)
    return out


def record_error(exc: ValidationError) -> RecordError:
    """A pydantic error on an edit, as a message naming the field and what was expected."""
    err = exc.errors()[0]
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    msg = err["msg"]
    if "surrogates not allowed" in msg:
        msg = "text that is not valid Unicode (a lone surrogate escape such as \\ud800)"
    elif err["type"] == "missing":
        msg = "missing; every edit needs subject, prompt and target_new"
    elif err["type"] == "extra_forbidden":
        msg = f"unknown field; an edit has the fields {sorted(EDIT_FIELDS)}"
    elif "input" in err:
        msg = f"{msg}, got {err['input']!r:.60}"
    return RecordError(_field_path(err["loc"]) or None, msg + more)


def jsonl_edits(rec: Any, source: str) -> list[Edit]:
    rec = obj(rec, "", "an object (one edit)")
    data = dict(rec)
    if "kind" not in data:
        data["kind"] = "modify" if data.get("target_old") else "insert"
    data.setdefault("source", source)
    try:
        return [Edit.model_validate(data)]
    except ValidationError as exc:
        raise record_error(exc) from None


def csv_columns(first_row: list[str]) -> tuple[list[str], bool]:
    """The column names, and whether ``first_row`` is a header (else positional columns)."""
    names = [c.strip().lower() for c in first_row]
    if not set(CSV_REQUIRED) & set(names):
        if not 3 <= len(first_row) <= 4:
            raise RecordError(
                None,
                f"no header row and {len(first_row)} columns; expected a header naming "
                f"{', '.join(CSV_REQUIRED)} or the columns subject,prompt,target_new[,target_old]",
            )
        return list(CSV_POSITIONAL), False
    unknown = [n for n in names if n not in CSV_REQUIRED + CSV_OPTIONAL]
    if unknown:
        raise RecordError(
            unknown[0],
            f"unknown column in the header; skedit CSV columns are "
            f"{','.join(CSV_REQUIRED)}[,{','.join(CSV_OPTIONAL)}]",
        )
    missing = [n for n in CSV_REQUIRED if n not in names]
    if missing:
        raise RecordError(missing[0], f"the header has no column {missing[0]!r}")
    return names, True


def csv_edits(row: list[str], columns: list[str], source: str) -> list[Edit]:
    header = columns != list(CSV_POSITIONAL)
    if header and len(row) != len(columns) or not header and not 3 <= len(row) <= 4:
        want = str(len(columns)) if header else "3 or 4"
        raise RecordError(
            None, f"expected {want} columns ({','.join(columns)}), got {len(row)} (quoting?)"
        )
    data = {name: value for name, value in zip(columns, row, strict=False)}
    target_old = data.get("target_old", "").strip() or None
    kind = data.get("kind", "").strip().lower() or ("modify" if target_old else "insert")
    if kind not in EDIT_KINDS:
        raise RecordError("kind", f"expected one of {', '.join(EDIT_KINDS)}, got {kind!r}")
    return [
        Edit(
            id=data.get("id", "").strip(),
            subject=data["subject"],
            prompt=data["prompt"],
            target_new=data["target_new"],
            target_old=target_old,
            kind=kind,  # type: ignore[arg-type]
            relation=data.get("relation", "").strip() or None,
            source=source,
        )
    ]
