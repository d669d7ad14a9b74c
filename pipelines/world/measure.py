"""The base-model report of a world: closed-book recall and the in-context reading curve.

Measured with ``skedit.sft.modelops.generate`` and ``skedit.prompts.answers.matches``, the code
every other stage uses, so these numbers are the teacher's real ceiling.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from skedit.pipelines.world.gen import RELATIONS, TWO_HOPS, World
from skedit.prompts.answers import first_answer, matches, normalise
from skedit.prompts.render import compact_statement, context_prefix, relation_tables
from skedit.prompts.schema import Edit
from skedit.sft.modelops import generate

K_VALUES = (1, 4, 8, 16)
TABLE_K_VALUES = (1, 4, 8, 16, 32)  # relation tables: the rules writer lays out up to 32
MAX_NEW_TOKENS = 4  # one-token answers: the answer, the period, EOS


def _accuracy(model, tok, prompts, answers, prefixes=None, desc=None) -> float:
    if not prompts:
        return 0.0
    gens = generate(
        model, tok, prompts, prefixes=prefixes, max_new_tokens=MAX_NEW_TOKENS, desc=desc
    )
    return round(sum(matches(g, [a]) for g, a in zip(gens, answers, strict=True)) / len(gens), 4)


def closed_book(model, tok, world: World, *, n: int, seed: int = 0) -> dict:
    """recall in training phrasings, in held-out phrasings, and untrained two-hop questions."""
    rng = random.Random(f"skedit-eval:{seed}")
    facts = [(s, r) for s, rels in world.facts.items() for r in rels]
    train = rng.sample(facts, min(n, len(facts)))
    tp = [rng.choice(RELATIONS[r].train).format(s=s) for s, r in train]
    held = [(s, r) for s, r in facts if s in set(world.holdout)]
    held = rng.sample(held, min(n, len(held)))
    hp = [rng.choice(RELATIONS[r].heldout).format(s=s) for s, r in held]
    trained = set(world.two_hop_trained)
    people = [p for p in world.names["person"] if p not in trained]
    hops = [(p, h) for p in people for h in TWO_HOPS]
    hops = rng.sample(hops, min(n, len(hops)))
    two = [rng.choice(TWO_HOPS[h].train).format(s=p) for p, h in hops]
    return {
        "recall": {
            "train": _accuracy(
                model, tok, tp, [world.facts[s][r] for s, r in train], desc="recall"
            ),
            "heldout": _accuracy(
                model, tok, hp, [world.facts[s][r] for s, r in held], desc="held-out"
            ),
        },
        "two_hop": _accuracy(model, tok, two, [world.value(p, h) for p, h in hops], desc="two-hop"),
    }


def in_context(
    model,
    tok,
    edits: Sequence[Edit],
    *,
    k_values=K_VALUES,
    n_edits: int,
    seed: int = 0,
    layout: str = "statements",
) -> dict:
    """Edit / paraphrase / portability / locality with k edits' compact statements in context
    (``layout="tables"``: laid out relation by relation, as the rules writer's dense prompts are).

    Each group of k edits becomes one context; every edit of the group is asked about.
    Locality: the answer with the context equals the model's answer without it.
    """
    rng = random.Random(f"skedit-eval-ctx:{seed}")
    pool = list(edits)
    rng.shuffle(pool)
    pool = pool[:n_edits]
    loc_prompts = sorted({p.prompt for e in pool for p in e.locality})
    plain = generate(
        model, tok, loc_prompts, max_new_tokens=MAX_NEW_TOKENS, desc="locality reference"
    )
    reference = {p: normalise(first_answer(g)) for p, g in zip(loc_prompts, plain, strict=True)}
    out: dict[str, dict[str, float]] = {}
    for k in k_values:
        rows: dict[str, list[tuple[str, str, list[str]]]] = {
            "edit": [],
            "paraphrase": [],
            "portability": [],
            "locality": [],
        }
        for start in range(0, len(pool) - k + 1, k):
            group = pool[start : start + k]
            facts = [(e.subject, e.relation or "", e.target_new) for e in group]
            if layout == "tables":
                facts.sort(key=lambda f: f[1])  # one table per relation
                text = " ".join(relation_tables(facts))
            else:
                text = " ".join(compact_statement(*f) for f in facts)
            prefix = context_prefix(text)
            for e in group:
                rows["edit"].append((prefix, e.prompt, [e.target_new]))
                rows["paraphrase"] += [(prefix, r, [e.target_new]) for r in e.rephrases]
                rows["portability"] += [(prefix, p.prompt, p.answers) for p in e.portability]
                rows["locality"] += [(prefix, p.prompt, [reference[p.prompt]]) for p in e.locality]
        flat = [r for kind in rows.values() for r in kind]
        gens = generate(
            model,
            tok,
            [p for _, p, _ in flat],
            prefixes=[c for c, _, _ in flat],
            max_new_tokens=MAX_NEW_TOKENS,
            desc=f"in-context {layout} k={k}",
        )
        res, i = {}, 0
        for kind, items in rows.items():
            got = gens[i : i + len(items)]
            i += len(items)
            ok = [matches(g, a) for g, (_, _, a) in zip(got, items, strict=True)]
            res[kind] = round(sum(ok) / len(ok), 4) if ok else 0.0
        out[str(k)] = res
    return out
