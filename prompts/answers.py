"""Does a generation give an expected answer? One definition, used by every stage."""

from __future__ import annotations

import re
import unicodedata

_PUNCT_EDGE = re.compile(r"^[\s\"'`(\[]+|[\s\"'`.,;:!?)\]]+$")


def normalise(text: str) -> str:
    """Lower-case, NFKC, collapse spaces, strip surrounding quotes and punctuation."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"\s+", " ", text)
    return _PUNCT_EDGE.sub("", text)


def first_answer(generation: str) -> str:
    """The answer part of a greedy generation: up to the first newline or sentence end."""
    text = generation.strip()
    text = text.split("\n", 1)[0]
    m = re.search(r"(?<=\w)[.!?](\s|$)", text)
    return text[: m.start() + 1] if m else text


def matches(generation: str, answers: list[str] | str) -> bool:
    """Exact match with aliases: the generation's answer equals one alias, or starts with it
    followed by a word boundary ("Paris, France" matches "Paris"; "Parisian" does not)."""
    if isinstance(answers, str):
        answers = [answers]
    got = normalise(first_answer(generation))
    for alias in answers:
        want = normalise(alias)
        if not want:
            continue
        if got == want or (got.startswith(want) and not got[len(want)].isalnum()):
            return True
    return False
