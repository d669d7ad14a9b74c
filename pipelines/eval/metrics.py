"""Evaluation metrics as pure functions: no model here, only numbers and strings.

Definitions (written at the top of every report, see ``evaluate.PROTOCOL``):

- exact match: :func:`skedit.prompts.answers.matches` on the greedy generation, aliases allowed;
- token accuracy (EasyEdit): one teacher-forced pass on ``prompt + " " + target``; the fraction
  of target positions whose argmax is the target token;
- locality: the greedy answer equals the *pre-edit* model's recorded answer; token-level, the
  fraction of target positions whose argmax equals the pre-edit model's argmax on the same input;
- fluency (EasyEdit): per text, the mean of 2/3·H(bigrams) and 4/3·H(trigrams) in bits; the
  mean over texts, ×100;
- perplexity: exp of the mean token negative log-likelihood;
- bootstrap 95% CI: percentile bootstrap of the mean, seeded; resampling whole groups (edits)
  when groups are given, since probes of one edit are not independent.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Hashable, Sequence

from skedit.prompts.answers import matches, same_answer

_WORD = re.compile(r"\w+|[^\w\s]")


def exact_match(generation: str, answers: Sequence[str] | str) -> float:
    """1.0 when the greedy generation gives one of the aliases (see ``answers.matches``)."""
    return (
        1.0
        if matches(generation, list(answers) if not isinstance(answers, str) else answers)
        else 0.0
    )


def token_accuracy(predicted: Sequence[int], target: Sequence[int]) -> float:
    """Fraction of target positions whose teacher-forced argmax is the target token."""
    if not target:
        return 0.0
    if len(predicted) != len(target):
        raise ValueError(f"{len(predicted)} predictions for {len(target)} target tokens")
    return sum(int(p == t) for p, t in zip(predicted, target, strict=True)) / len(target)


def locality_agreement(generation: str, expected: str) -> float:
    """1.0 when the post-edit answer is the pre-edit model's recorded answer (not the gold)."""
    return 1.0 if same_answer(generation, expected) else 0.0


def token_locality(post_predicted: Sequence[int], pre_predicted: Sequence[int]) -> float:
    """Fraction of positions whose argmax is unchanged from the pre-edit model (same input)."""
    return token_accuracy(post_predicted, pre_predicted)


def ngram_entropy(text: str, n: int) -> float:
    """Entropy in bits of the distribution of word n-grams of ``text`` (0 when it has none)."""
    words = _WORD.findall(text)
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    if not total:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in grams.values())


def text_fluency(text: str) -> float:
    """EasyEdit's weighted n-gram entropy of one text: mean(2/3·H2, 4/3·H3)."""
    return (2 / 3 * ngram_entropy(text, 2) + 4 / 3 * ngram_entropy(text, 3)) / 2


def fluency(texts: Sequence[str]) -> float:
    """Mean weighted n-gram entropy over texts, ×100 as EasyEdit reports it."""
    if not texts:
        return 0.0
    return 100.0 * sum(text_fluency(t) for t in texts) / len(texts)


def perplexity(total_nll: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token), from a summed NLL in nats."""
    if n_tokens <= 0:
        return float("nan")
    return math.exp(total_nll / n_tokens)


def bootstrap_ci(
    values: Sequence[float],
    *,
    groups: Sequence[Hashable] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean. With ``groups``, whole groups are resampled."""
    if not values:
        return (float("nan"), float("nan"))
    if groups is None:
        clusters = [[v] for v in values]
    else:
        by: dict[Hashable, list[float]] = {}
        for v, g in zip(values, groups, strict=True):
            by.setdefault(g, []).append(v)
        clusters = list(by.values())
    sums = [(sum(c), len(c)) for c in clusters]
    rng = random.Random(seed)
    k = len(sums)
    means = []
    for _ in range(n_resamples):
        s = n = 0.0
        for _ in range(k):
            cs, cn = sums[rng.randrange(k)]
            s += cs
            n += cn
        means.append(s / n)
    means.sort()
    lo_i = int(math.floor((1 - level) / 2 * (n_resamples - 1)))
    hi_i = int(math.ceil((1 + level) / 2 * (n_resamples - 1)))
    return (means[lo_i], means[hi_i])


def summarise(
    values: Sequence[float], *, groups: Sequence[Hashable] | None = None, seed: int = 0
) -> dict:
    """``{"mean", "n", "ci"}`` of per-probe scores (mean and CI are None when n is 0)."""
    if not values:
        return {"mean": None, "n": 0, "ci": None}
    lo, hi = bootstrap_ci(values, groups=groups, seed=seed)
    return {"mean": sum(values) / len(values), "n": len(values), "ci": [lo, hi]}


def first_per_edit(probes, n: int) -> list:
    """The first ``n`` probes of each (edit, kind), in order: a smaller evaluation set that
    still covers every edit and every kind of probe."""
    seen: dict[tuple, int] = {}
    out = []
    for p in probes:
        key = (p.edit_id, p.kind)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= n:
            out.append(p)
    return out
