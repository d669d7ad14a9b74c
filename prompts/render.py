"""How a dense prompt is laid out in front of a probe, and how a fact is stated.

One layout for everything that reads a context: the teacher in the agents' critic, the
transfer set, the PROMPT/IKE baseline, and the synthetic world's training documents. The prefix
is tokenised on its own and its ids are concatenated with the probe's ids, so the probe and
completion tokens are identical with and without the context.
"""

from __future__ import annotations

CONTEXT_OPEN = "Context:"
CONTEXT_CLOSE = "\n"


def context_prefix(text: str) -> str:
    """The string put before a probe when the teacher reads ``text`` (a dense prompt)."""
    return f"{CONTEXT_OPEN} {text.strip()}{CONTEXT_CLOSE}"


def teacher_input(text: str, prompt: str) -> str:
    """Context and probe as one string (for display; models get the two parts tokenised apart)."""
    return context_prefix(text) + prompt


def fact_statement(prompt: str, target: str) -> str:
    """A fact as one sentence: a cloze completed by its target, or a question and its answer."""
    prompt = prompt.strip()
    target = target.strip()
    if prompt.endswith("?"):
        return f"{prompt} {target}."
    if "{}" in prompt:
        prompt = prompt.replace("{}", "").strip()
    sentence = f"{prompt} {target}"
    return sentence if sentence.endswith((".", "!", "?")) else sentence + "."


def completion_text(answer: str) -> str:
    """A completion as TRL concatenates it after the prompt: one leading space."""
    return " " + answer.strip()


def compact_statement(subject: str, relation: str, target: str) -> str:
    """One fact in the fewest words a teacher is trained to read: ``subject relation target.``

    ``relation`` is a single word (e.g. ``birthplace``); used when an edit names its relation.
    """
    return f"{subject.strip()} {relation.strip()} {target.strip()}."


def table_statement(relation: str, rows: list[tuple[str, str]]) -> str:
    """Facts of one relation as one table: ``relation: s1 t1 s2 t2.``

    The relation is written once for all rows, so with one token per name a fact costs two
    tokens instead of a compact statement's four. Rows are separated by commas when a subject or
    target has several words (``birthplace: Ada Lovelace London, Alan Turing London.``); a
    one-row table is never denser than :func:`compact_statement`. Only a teacher that reads it
    should get it (the synthetic world's teacher is trained to; the critic checks any other).
    """
    cells = [(s.strip(), t.strip()) for s, t in rows]
    sep = ", " if any(" " in c for row in cells for c in row) else " "
    return f"{relation.strip()}: " + sep.join(f"{s} {t}" for s, t in cells) + "."


def relation_tables(facts: list[tuple[str, str, str]]) -> list[str]:
    """``(subject, relation, target)`` facts laid out relation by relation, in order of first
    appearance: a :func:`table_statement` per relation with two or more facts, a
    :func:`compact_statement` for a relation with one."""
    by_relation: dict[str, list[tuple[str, str]]] = {}
    for s, r, t in facts:
        by_relation.setdefault(r.strip(), []).append((s, t))
    return [
        table_statement(r, rows) if len(rows) > 1 else compact_statement(rows[0][0], r, rows[0][1])
        for r, rows in by_relation.items()
    ]
