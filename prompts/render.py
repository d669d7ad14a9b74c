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
    """The densest form of a fact a teacher is trained to read: ``subject relation target.``

    ``relation`` is a single word (e.g. ``birthplace``); used when an edit names its relation.
    """
    return f"{subject.strip()} {relation.strip()} {target.strip()}."


def grouped_statement(subject: str, targets: list[str]) -> str:
    """Several facts of one subject, relations implied by the targets: ``subject t1 t2.``

    Denser than :func:`compact_statement` (one token per extra fact with a word-level
    tokenizer); only for a teacher trained to read it, where each relation of a subject has its
    own kind of value (the synthetic world's teacher is; the critic checks any other).
    """
    return " ".join([subject.strip(), *(t.strip() for t in targets)]) + "."
