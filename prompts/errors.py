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
