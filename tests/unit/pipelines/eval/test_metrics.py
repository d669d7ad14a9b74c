"""Each metric on hand-made outputs where the right number is known."""

from __future__ import annotations

import math

import pytest

from skedit.pipelines.eval import metrics as M


def test_exact_match_aliases_and_leading_spaces():
    assert M.exact_match(" Paris, France.", ["Lyon", "paris"]) == 1.0
    assert M.exact_match("  the Big Apple\nnext line", ["New York", "The Big Apple"]) == 1.0
    assert M.exact_match(" Parisian food", ["Paris"]) == 0.0  # a word boundary is required
    assert M.exact_match(" Rome", "Paris") == 0.0


def test_token_accuracy_multi_token_target():
    assert M.token_accuracy([5, 6, 7], [5, 9, 7]) == pytest.approx(2 / 3)
    assert M.token_accuracy([4], [4]) == 1.0
    assert M.token_accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        M.token_accuracy([1, 2], [1])


def test_locality_is_agreement_with_the_pre_edit_answer_not_the_gold():
    # gold says Paris, the pre-edit model said Lyon; unchanged output means locality kept
    pre_edit_answer, gold = "Lyon", "Paris"
    assert M.locality_agreement(" Lyon. And more", pre_edit_answer) == 1.0
    assert M.locality_agreement(" Paris", pre_edit_answer) == 0.0
    assert M.locality_agreement(" Paris", gold) == 1.0  # (what a gold-based metric would say)
    assert M.token_locality([3, 8, 8], [3, 8, 1]) == pytest.approx(2 / 3)


def test_ngram_entropy_and_fluency_by_hand():
    # 4 words -> 3 distinct bigrams (log2 3) and 2 distinct trigrams (1 bit)
    text = "a b c d"
    assert M.ngram_entropy(text, 2) == pytest.approx(math.log2(3))
    assert M.ngram_entropy(text, 3) == pytest.approx(1.0)
    expected = (2 / 3 * math.log2(3) + 4 / 3 * 1.0) / 2
    assert M.text_fluency(text) == pytest.approx(expected)
    # a repetitive text is less fluent: "a a a a" has one bigram and one trigram -> 0 bits
    assert M.text_fluency("a a a a") == 0.0
    assert M.fluency([text, "a a a a"]) == pytest.approx(100 * expected / 2)
    assert M.ngram_entropy("one", 2) == 0.0


def test_perplexity_from_summed_nll():
    assert M.perplexity(4 * math.log(10), 4) == pytest.approx(10.0)
    assert math.isnan(M.perplexity(1.0, 0))


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = [1.0] * 70 + [0.0] * 30
    a = M.bootstrap_ci(values, seed=3)
    assert a == M.bootstrap_ci(values, seed=3)
    assert a[0] < 0.7 < a[1]
    assert a[0] > 0.55 and a[1] < 0.85
    assert M.bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    # resampling whole edits widens the interval when an edit's probes move together
    grouped = M.bootstrap_ci([1.0] * 50 + [0.0] * 50, groups=[i // 10 for i in range(100)])
    flat = M.bootstrap_ci([1.0] * 50 + [0.0] * 50)
    assert grouped[1] - grouped[0] > flat[1] - flat[0]


def test_summarise_shape():
    s = M.summarise([1.0, 0.0, 1.0, 1.0])
    assert s["mean"] == 0.75 and s["n"] == 4 and len(s["ci"]) == 2
    assert M.summarise([]) == {"mean": None, "n": 0, "ci": None}
