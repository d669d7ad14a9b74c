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
    return matched_alias(generation, answers) is not None


def matched_alias(generation: str, answers: list[str] | str) -> str | None:
    """The first alias that :func:`matches` the generation, or None."""
    if isinstance(answers, str):
        answers = [answers]
    got = normalise(first_answer(generation))
    for alias in answers:
        want = normalise(alias)
        if not want:
            continue
        if got == want or (got.startswith(want) and not got[len(want)].isalnum()):
            return alias
    return None


_SPAN_END = re.compile(r"[,;:(\[]|\s[-\u2013\u2014]\s")


def answer_span(generation: str) -> str:
    """The answer itself, normalised: the first answer cut at the first comma, colon,
    semicolon, bracket or dash ("Italy, and it's a city that" -> "italy")."""
    text = first_answer(generation)
    m = _SPAN_END.search(text)
    return normalise(text[: m.start()] if m else text)


def same_answer(generation: str, reference: str) -> bool:
    """Do two free-text continuations give the same answer? Their answer spans are equal, or
    one continues the other at a word boundary ("Paris" and "Paris is the capital"). This is
    how locality compares a model's answer with the pre-edit model's: a real model's
    continuations are free text, and only the answer has to be kept."""
    a, b = answer_span(generation), answer_span(reference)
    if not a or not b:
        return a == b
    short, long_ = sorted((a, b), key=len)
    return long_ == short or (long_.startswith(short) and not long_[len(short)].isalnum())
