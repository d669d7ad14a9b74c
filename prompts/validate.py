"""Problems in a batch of edits that a user can act on: never dropped, never merged silently.

Two levels: :func:`check_edit` finds what is wrong with one edit on its own (an empty target,
a subject its prompt does not name); :func:`check_batch` finds what is wrong between edits
(duplicate ids, conflicting edits). :func:`check_edits` runs both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from pydantic import BaseModel

from skedit.prompts.schema import Edit


class Problem(BaseModel):
    """One problem: where it is (file, record, line, field) and what was expected.

    ``record`` is the record's index in a JSON list, its line number in JSONL/CSV, or an edit's
    ``source`` ("file:record") when only the edit is known; ``line`` is the line it starts on.
    """

    record: str | int | None = None
    field: str | None = None
    message: str
    file: str | None = None
    line: int | None = None

    def render(self) -> str:
        where = [self.file] if self.file else []
        if self.line is not None and self.record in (None, self.line):
            where.append(f"line {self.line}")
        elif isinstance(self.record, int):
            where.append(f"record {self.record}")
            if self.line is not None:
                where[-1] += f" (line {self.line})"
        elif self.record is not None:
            where.append(str(self.record))
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{': '.join(where)}: {self.message}" if where else self.message


def _where(edit: Edit, index: int) -> str | int:
    return edit.source or index


def check_edit(edit: Edit, where: str | int | None = None) -> list[Problem]:
    """What is wrong with one edit by itself: empty target or subject, subject not in prompt."""
    where = edit.source if where is None else where
    problems: list[Problem] = []
    if not edit.target_new.strip() and edit.kind != "erase":
        problems.append(
            Problem(record=where, field="target_new", message="empty target; give the new answer")
        )
    if not edit.prompt.strip():
        problems.append(
            Problem(record=where, field="prompt", message="empty prompt; give the question")
        )
    if not edit.subject.strip():
        problems.append(Problem(record=where, field="subject", message="empty subject"))
    elif edit.prompt.strip() and edit.subject.lower() not in edit.prompt.lower():
        problems.append(
            Problem(
                record=where,
                field="prompt",
                message=f"subject {edit.subject!r} does not occur in prompt {edit.prompt!r}; "
                "the prompt must name the subject",
            )
        )
    return problems


def check_batch(
    edits: Sequence[Edit],
    relations: Sequence[str | None] | None = None,
    *,
    where: Sequence[str | int] | None = None,
    unit: str = "record",
) -> list[Problem]:
    """Duplicate ids and conflicting edits (same subject and prompt, different targets).

    ``relations`` (one per edit, e.g. Wikidata ids from CounterFact/MQuAKE) also catches
    conflicts between differently worded prompts: same subject and relation, different targets.
    ``where`` gives each edit's location for messages (default: its ``source`` or index), and
    ``unit`` what that location counts ("record", "line").
    """

    def _loc(e: Edit, i: int) -> str | int:
        return where[i] if where is not None else _where(e, i)

    problems: list[Problem] = []
    seen_ids: dict[str, str | int] = {}
    by_question: dict[tuple, list[tuple[int, Edit]]] = defaultdict(list)
    by_relation: dict[tuple, list[tuple[int, Edit]]] = defaultdict(list)
    for i, e in enumerate(edits):
        loc = _loc(e, i)
        if e.id in seen_ids:
            problems.append(
                Problem(
                    record=loc,
                    field="id",
                    message=f"duplicate id {e.id!r} (first at {unit} {seen_ids[e.id]}); "
                    "give each edit its own id or drop the repeat",
                )
            )
        else:
            seen_ids[e.id] = loc
        by_question[(e.subject.strip().lower(), e.prompt.strip().lower())].append((i, e))
        rel = relations[i] if relations is not None else None
        if rel:
            by_relation[(e.subject.strip().lower(), rel)].append((i, e))
    reported: set[int] = set()
    for key, groups in (("prompt", by_question), ("relation", by_relation)):
        for (_, label), group in groups.items():
            first_i, first = group[0]
            for i, e in group[1:]:
                if (
                    i in reported
                    or e.target_new.strip().lower() == first.target_new.strip().lower()
                ):
                    continue
                reported.add(i)
                same = "prompt" if key == "prompt" else f"relation {label}"
                problems.append(
                    Problem(
                        record=_loc(e, i),
                        field="target_new",
                        message=(
                            f"conflicts with {unit} {_loc(first, first_i)}: same subject and "
                            f"{same}, targets {first.target_new!r} vs {e.target_new!r}; "
                            "keep one of them"
                        ),
                    )
                )
    return problems


def check_edits(
    edits: Sequence[Edit], relations: Sequence[str | None] | None = None
) -> list[Problem]:
    """Empty targets, subjects missing from their prompts, duplicate ids, conflicting edits."""
    problems: list[Problem] = []
    for i, e in enumerate(edits):
        problems += check_edit(e, _where(e, i))
    return problems + check_batch(edits, relations)
