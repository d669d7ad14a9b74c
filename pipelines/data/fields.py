"""Typed access to the fields of a raw dataset record, with messages a user can act on.

Every accessor takes the record, the key and the field path used in messages
(``requested_rewrite.target_new.str``, ``portability.Reasoning[0].ground_truth``) and raises
:class:`RecordError` naming the field and what was expected.
"""

from __future__ import annotations

from typing import Any

from skedit.pipelines.data.rawfile import type_name


class RecordError(Exception):
    """A record that cannot become an edit: which field, and what was expected."""

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def obj(value: Any, field: str, what: str = "an object") -> dict:
    if not isinstance(value, dict):
        raise RecordError(field or None, f"expected {what}, got {type_name(value)}")
    return value


def req(rec: dict, key: str, path: str = "", what: str = "a value") -> Any:
    if key not in rec:
        have = ", ".join(sorted(map(str, rec))) or "none"
        raise RecordError(join(path, key), f"missing; expected {what} (fields present: {have})")
    return rec[key]


def req_str(rec: dict, key: str, path: str = "", what: str = "a string") -> str:
    value = req(rec, key, path, what)
    if not isinstance(value, str):
        raise RecordError(join(path, key), f"expected {what}, got {type_name(value)}")
    return value


def opt_str(rec: dict, key: str, path: str = "") -> str | None:
    value = rec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(join(path, key), f"expected a string, got {type_name(value)}")
    return value


def str_list(rec: dict, key: str, path: str = "") -> list[str]:
    """A string or a list of strings (absent or null: empty)."""
    value = rec.get(key)
    field = join(path, key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise RecordError(field, f"expected a list of strings, got {type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise RecordError(join(field, i), f"expected a string, got {type_name(item)}")
    return list(value)


def answers(value: Any, field: str) -> list[str]:
    """A ground truth as aliases: a string, a list of strings, or a list of alias lists.

    A list of alias lists is flattened in order, duplicates dropped: every string in it counts
    as a right answer. KnowEdit uses that shape both for one answer with aliases
    (``[["Kai Wegner", "Kai Peter Wegner"]]``) and for several acceptable answers
    (``[["no"], ["incorrect"], ["false"]]``); skedit's exact match accepts any alias, so both
    readings give the same verdict on a single greedy answer.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise RecordError(field, f"expected a string or a list of strings, got {type_name(value)}")
    out: list[str] = []
    for i, item in enumerate(value):
        group = item if isinstance(item, list) else [item]
        for j, alias in enumerate(group):
            if not isinstance(alias, str):
                where = join(join(field, i), j) if isinstance(item, list) else join(field, i)
                raise RecordError(
                    where, f"expected a string (an answer or alias), got {type_name(alias)}"
                )
            alias = alias.strip()
            if alias and alias not in out:
                out.append(alias)
    return out
