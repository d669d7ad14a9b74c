"""Answers of real models are free text: locality compares answers, not continuations."""

from skedit.pipelines.eval import metrics as M
from skedit.prompts.answers import answer_span, same_answer


def test_a_kept_answer_followed_by_other_text_is_kept():
    # the critic reported this as a locality failure on SmolLM2 (issue 17)
    assert same_answer(" Italy.", "Italy, and it's a city that")
    assert same_answer(" Paris is the capital of France", " Paris")
    assert M.locality_agreement(" Italy.", "Italy, and it's a city that") == 1.0


def test_a_changed_answer_is_a_change():
    assert not same_answer(" the United Kingdom", "the United States")
    assert not same_answer(" Lyon", "Paris, France")
    assert not same_answer(" Parisian food", "Paris")
    assert M.locality_agreement(" Europe.", "Antarctica. It is the") == 0.0


def test_answer_span_cuts_at_the_first_clause():
    assert answer_span("  Italy, and it's a city that") == "italy"
    assert answer_span("Rome (the capital)") == "rome"
