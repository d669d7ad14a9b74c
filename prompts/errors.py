"""Errors meant for a person: what was wrong, where (file, record, field), what to do."""

from __future__ import annotations


class SkeditError(Exception):
    """A problem the user can fix. The CLI prints it without a traceback and exits 2."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        record: str | int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.record = record
        self.field = field
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.field:
            where.append(f"field '{self.field}'")
        head = f"{': '.join(where)}: " if where else ""
        tail = f"\n  hint: {self.hint}" if self.hint else ""
        return f"{head}{self.message}{tail}"


def reject_unknown_keys(
    data: dict,
    known: set[str] | list[str],
    *,
    what: str,
    file: str | None = None,
    field_prefix: str | None = None,
) -> None:
    """Raise a :class:`SkeditError` naming every key of ``data`` not in ``known``.

    Settings are read from files people type: a misspelt key must be an error, never a value
    silently left at its default. ``what`` names the keys in the message ("training option(s)").
    """
    unknown = sorted(set(data) - set(known))
    if not unknown:
        return
    first = f"{field_prefix}.{unknown[0]}" if field_prefix else unknown[0]
    raise SkeditError(
        f"unknown {what}: {', '.join(unknown)}",
        file=file,
        field=first,
        hint=f"known: {', '.join(sorted(known))}",
    )
