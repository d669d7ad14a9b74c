"""The world's benchmark: counterfactual and insertion edits in skedit's edit format.

Each benchmark person gets two edits (two of their four relations); the other two relations are
never edited anywhere in the file, so they are safe "same subject" locality probes even when a
whole split is applied at once. New people (insertions) get two facts each. Rephrases use the
held-out phrasings; portability probes go one hop beyond the edited fact and their answers are
computed from the edited world; locality answers are the world's (the pre-edit model's
recorded answer is filled in later by whoever applies the edits).
"""

from __future__ import annotations

import random

from skedit.pipelines.world.gen import (
    PERSON_RELATIONS,
    RELATIONS,
    World,
    regular_people,
    two_hops_through,
)
from skedit.prompts.schema import Edit, Probe


def _probe(prompt: str, answer: str, kind: str, subkind: str) -> Probe:
    return Probe(prompt=prompt, answers=[answer], kind=kind, subkind=subkind)  # type: ignore[arg-type]


def _edit(
    world: World,
    rng: random.Random,
    split: str,
    subject: str,
    relation: str,
    new: str,
    *,
    insert: bool,
    untouched: list[str],
) -> Edit:
    rel = RELATIONS[relation]
    portability = []
    for h in rng.sample(two_hops_through(relation), min(2, len(two_hops_through(relation)))):
        answer = world.facts[new][h.second]
        portability.append(
            _probe(rng.choice(h.train).format(s=subject), answer, "portability", h.name)
        )
    locality = []
    for r in untouched:  # same subject, relations no edit in the benchmark touches
        p = rng.choice(RELATIONS[r].train).format(s=subject)
        locality.append(_probe(p, world.facts[subject][r], "locality", "same_subject"))
    for other in rng.sample(regular_people(world), 2):
        r = rng.choice(PERSON_RELATIONS)
        locality.append(
            _probe(
                rng.choice(r.train).format(s=other),
                world.facts[other][r.name],
                "locality",
                "other_subject",
            )
        )
    things = world.names["country"] + world.names["city"] + world.names["company"]
    thing = rng.choice(things)
    r = rng.choice(sorted(world.facts[thing]))
    locality.append(
        _probe(
            rng.choice(RELATIONS[r].train).format(s=thing),
            world.facts[thing][r],
            "locality",
            "world",
        )
    )
    return Edit(
        subject=subject,
        prompt=rng.choice(rel.train).format(s=subject),
        target_new=new,
        target_old=None if insert else world.facts[subject][relation],
        kind="insert" if insert else "modify",
        relation=relation,
        rephrases=[p.format(s=subject) for p in rel.heldout],
        portability=portability,
        locality=locality,
        source=f"world-{world.seed}:{split}",
    )


def _new_value(world: World, rng: random.Random, relation: str, old: str | None) -> str:
    choices = [v for v in world.names[RELATIONS[relation].range] if v != old]
    return rng.choice(choices)


def benchmark_edits(world: World, split: str) -> list[Edit]:
    """The edits of one split (``dev`` or ``test``), in a fixed shuffled order."""
    rng = random.Random(f"skedit-bench:{world.seed}:{split}")
    rel_names = [r.name for r in PERSON_RELATIONS]
    edits: list[Edit] = []
    for person in world.bench_people[split]:
        chosen = rng.sample(rel_names, 2)
        untouched = [r for r in rel_names if r not in chosen]
        for r in chosen:
            new = _new_value(world, rng, r, world.facts[person][r])
            edits.append(
                _edit(world, rng, split, person, r, new, insert=False, untouched=untouched)
            )
    for name in world.bench_fresh[split]:
        for r in rng.sample(rel_names, 2):
            new = _new_value(world, rng, r, None)
            edits.append(_edit(world, rng, split, name, r, new, insert=True, untouched=[]))
    rng.shuffle(edits)
    return [e.model_copy(update={"source": f"{e.source}:{i + 1}"}) for i, e in enumerate(edits)]
