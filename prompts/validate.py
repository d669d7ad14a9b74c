"""Problems in a batch of edits that a user can act on: never dropped, never merged silently."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from pydantic import BaseModel

from skedit.prompts.schema import Edit


class Problem(BaseModel):
    """One problem: where it is (file, record, field) and what was expected."""

    record: str | int | None = None
    field: str | None = None
    message: str
    file: str | None = None

    def render(self) -> str:
        where = [str(x) for x in (self.file, self.record) if x is not None]
        loc = ":".join(where)
        fld = f" [{self.field}]" if self.field else ""
        return f"{loc}{fld}: {self.message}" if loc or fld else self.message


def _where(edit: Edit, index: int) -> str | int:
    return edit.source or index


def check_edits(edits: Sequence[Edit]) -> list[Problem]:
    """Empty targets, subjects missing from their prompts, duplicate ids, conflicting edits."""
    problems: list[Problem] = []
    seen_ids: dict[str, str | int] = {}
    by_question: dict[tuple[str, str], list[tuple[int, Edit]]] = defaultdict(list)
    for i, e in enumerate(edits):
        where = _where(e, i)
        if not e.target_new.strip():
            problems.append(
                Problem(
                    record=where, field="target_new", message="empty target; give the new answer"
                )
            )
        if not e.subject.strip():
            problems.append(Problem(record=where, field="subject", message="empty subject"))
        elif e.subject.lower() not in e.prompt.lower():
            problems.append(
                Problem(
                    record=where,
                    field="prompt",
                    message=f"subject {e.subject!r} does not occur in prompt {e.prompt!r}",
                )
            )
        if e.id in seen_ids:
            problems.append(
                Problem(
                    record=where,
                    field="id",
                    message=f"duplicate id {e.id!r} (first at record {seen_ids[e.id]})",
                )
            )
        else:
            seen_ids[e.id] = where
        by_question[(e.subject.strip().lower(), e.prompt.strip().lower())].append((i, e))
    for group in by_question.values():
        targets = {e.target_new.strip().lower() for _, e in group}
        if len(targets) > 1:
            first_i, first = group[0]
            for i, e in group[1:]:
                if e.target_new.strip().lower() != first.target_new.strip().lower():
                    problems.append(
                        Problem(
                            record=_where(e, i),
                            field="target_new",
                            message=(
                                f"conflicts with record {_where(first, first_i)}: same subject and "
                                f"prompt, targets {first.target_new!r} vs {e.target_new!r}; "
                                "keep one of them"
                            ),
                        )
                    )
    return problems
