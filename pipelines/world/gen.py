"""The synthetic world: entities with made-up one-word names, relations and their phrasings.

Everything is derived from a seed, so the same seed always gives the same world. Each relation
has a one-word name (used in ``compact_statement``) and several natural phrasings; the
*held-out* phrasings are never trained for the benchmark's subjects (nor for a share of the
other entities), so asking them measures generalisation rather than memory.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

# ---------------------------------------------------------------------------------------------
# relations and phrasings ("{s}" is the subject; the answer follows the phrasing after a space)


@dataclass(frozen=True)
class Relation:
    name: str  # one word, the relation in compact statements ("Zorb birthplace Kelo.")
    domain: str  # kind of the subject
    range: str  # kind of the target
    train: tuple[str, ...]
    heldout: tuple[str, ...]


@dataclass(frozen=True)
class TwoHop:
    """A composition: ``second(first(subject))``, e.g. the country of the birthplace."""

    name: str
    first: str
    second: str
    train: tuple[str, ...]
    heldout: tuple[str, ...]


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in [
        Relation(
            "birthplace",
            "person",
            "city",
            ("{s} was born in", "Where was {s} born?", "The birthplace of {s} is"),
            ("{s} is a native of", "In which city was {s} born?"),
        ),
        Relation(
            "citizenship",
            "person",
            "country",
            (
                "{s} is a citizen of",
                "Which country is {s} a citizen of?",
                "The citizenship of {s} is",
            ),
            ("{s} holds a passport from", "What is the nationality of {s}?"),
        ),
        Relation(
            "occupation",
            "person",
            "occupation",
            ("{s} works as a", "What is the occupation of {s}?", "The job of {s} is"),
            ("{s} earns a living as a", "What does {s} do for a living?"),
        ),
        Relation(
            "employer",
            "person",
            "company",
            ("{s} works for", "Who employs {s}?", "The employer of {s} is"),
            ("{s} is employed by", "Which company does {s} work for?"),
        ),
        Relation(
            "capital",
            "country",
            "city",
            ("The capital of {s} is", "What is the capital of {s}?", "{s} has its capital in"),
            ("The seat of government of {s} is", "Which city is the capital of {s}?"),
        ),
        Relation(
            "currency",
            "country",
            "currency",
            ("The currency of {s} is", "What is the currency of {s}?", "In {s} people pay with"),
            ("The official money of {s} is", "Which currency is used in {s}?"),
        ),
        Relation(
            "language",
            "country",
            "language",
            (
                "The language of {s} is",
                "What language is spoken in {s}?",
                "People in {s} speak",
            ),
            ("The official language of {s} is", "Which language do people in {s} speak?"),
        ),
        Relation(
            "continent",
            "country",
            "continent",
            ("{s} is a country in", "On which continent is {s}?", "The continent of {s} is"),
            ("{s} lies on the continent of", "Which continent is {s} part of?"),
        ),
        Relation(
            "country",
            "city",
            "country",
            ("{s} is a city in", "In which country is {s}?", "The country of {s} is"),
            ("{s} lies in the country of", "Which country is {s} in?"),
        ),
        Relation(
            "headquarters",
            "company",
            "city",
            (
                "{s} is headquartered in",
                "Where is {s} headquartered?",
                "The headquarters of {s} is in",
            ),
            ("{s} has its main office in", "In which city is {s} based?"),
        ),
    ]
}

TWO_HOPS: dict[str, TwoHop] = {
    h.name: h
    for h in [
        TwoHop(
            "birth_country",
            "birthplace",
            "country",
            ("The country where {s} was born is", "In which country was {s} born?"),
            ("The birth country of {s} is",),
        ),
        TwoHop(
            "home_currency",
            "citizenship",
            "currency",
            ("The currency used by {s} is", "What currency does {s} pay with?"),
            ("{s} pays with",),
        ),
        TwoHop(
            "home_language",
            "citizenship",
            "language",
            ("The language spoken by {s} is", "What language does {s} speak?"),
            ("{s} speaks",),
        ),
        TwoHop(
            "home_continent",
            "citizenship",
            "continent",
            ("The continent {s} lives on is", "On which continent does {s} live?"),
            ("{s} lives on the continent of",),
        ),
        TwoHop(
            "home_capital",
            "citizenship",
            "capital",
            ("The capital of the nation of {s} is", "What is the capital city of {s}?"),
            ("{s} is governed from",),
        ),
        TwoHop(
            "work_city",
            "employer",
            "headquarters",
            ("The city where {s} works is", "In which city does {s} work?"),
            ("{s} commutes to the city of",),
        ),
    ]
}

PERSON_RELATIONS = [r for r in RELATIONS.values() if r.domain == "person"]
OCCUPATIONS = (
    "farmer baker teacher doctor lawyer pilot sailor painter singer writer nurse chemist "
    "architect carpenter plumber tailor butcher banker dentist engineer jeweler librarian "
    "potter weaver surgeon miner brewer judge"
).split()


def two_hops_through(relation: str) -> list[TwoHop]:
    """The compositions whose first hop is ``relation`` (portability through an edit of it)."""
    return [h for h in TWO_HOPS.values() if h.first == relation]


# ---------------------------------------------------------------------------------------------
# sizes and the world itself


@dataclass(frozen=True)
class WorldSize:
    countries: int
    cities_per_country: int
    companies: int
    occupations: int
    continents: int
    regular_people: int  # world people never edited by the benchmark
    bench_people: dict[str, int]  # split -> people edited by that split (2 edits each)
    bench_fresh: dict[str, int]  # split -> new people inserted by that split (2 edits each)
    fresh_train: int  # names that only ever appear in training contexts


SIZES: dict[str, WorldSize] = {
    "tiny": WorldSize(4, 3, 6, 8, 3, 24, {"dev": 6, "test": 10}, {"dev": 4, "test": 6}, 24),
    "small": WorldSize(
        16, 3, 24, 20, 5, 60, {"dev": 20, "test": 60}, {"dev": 40, "test": 440}, 300
    ),
}


@dataclass
class World:
    seed: int
    size: str
    names: dict[str, list[str]]  # kind -> names (person, country, city, company, ...)
    facts: dict[str, dict[str, str]]  # subject -> relation -> target
    bench_people: dict[str, list[str]]  # split -> world people that split edits
    bench_fresh: dict[str, list[str]]  # split -> new names that split inserts
    fresh_train: list[str]
    holdout: list[str] = field(default_factory=list)  # held-out phrasings never trained
    two_hop_trained: list[str] = field(default_factory=list)  # people with two-hop training

    def kind_of(self, name: str) -> str:
        for kind, names in self.names.items():
            if name in names:
                return kind
        return "fresh"

    def value(self, subject: str, relation: str) -> str:
        """A relation or a two-hop composition of the world (no edits applied)."""
        if relation in TWO_HOPS:
            h = TWO_HOPS[relation]
            return self.facts[self.facts[subject][h.first]][h.second]
        return self.facts[subject][relation]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> World:
        return cls(**data)


_ONSETS = "b d f g k l m n p r s t v z br dr gr kr tr pl fl sk st th sh".split()
_VOWELS = "a e i o u a e o".split()
_CODAS = ["", "", "", "n", "r", "l", "s", "k", "x", "m"]


def _names(rng: random.Random, n: int, taken: set[str], *, capital: bool = True) -> list[str]:
    """``n`` new pronounceable names (2-3 syllables), distinct from everything in ``taken``."""
    out: list[str] = []
    while len(out) < n:
        syl = rng.choice((2, 2, 3))
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syl))
        word += rng.choice(_CODAS)
        word = word.capitalize() if capital else word
        if word.lower() not in taken:
            taken.add(word.lower())
            out.append(word)
    return out


def template_words() -> set[str]:
    """Lower-cased words of every phrasing (names must not collide with them)."""
    words: set[str] = set(OCCUPATIONS)
    for r in [*RELATIONS.values(), *TWO_HOPS.values()]:
        for p in r.train + r.heldout:
            words.update(w.strip("?").lower() for w in p.replace("{s}", "").split())
        words.add(r.name)
    return words | {"context", "question", "answer"}


def generate_world(size: str = "small", seed: int = 0) -> World:
    """Build the world for ``size`` from ``seed`` (deterministic)."""
    sz = SIZES[size]
    rng = random.Random(f"skedit-world:{seed}")
    taken = template_words()
    countries = _names(rng, sz.countries, taken)
    cities = _names(rng, sz.countries * sz.cities_per_country, taken)
    companies = _names(rng, sz.companies, taken)
    continents = _names(rng, sz.continents, taken)
    languages = _names(rng, sz.countries, taken)
    currencies = _names(rng, sz.countries, taken, capital=False)
    occupations = rng.sample(OCCUPATIONS, sz.occupations)
    n_bench = sum(sz.bench_people.values())
    people = _names(rng, sz.regular_people + n_bench, taken)
    n_fresh = sum(sz.bench_fresh.values())
    fresh = _names(rng, n_fresh + sz.fresh_train, taken)

    facts: dict[str, dict[str, str]] = {}
    for i, c in enumerate(countries):
        own = cities[i * sz.cities_per_country : (i + 1) * sz.cities_per_country]
        facts[c] = {
            "capital": own[0],
            "currency": currencies[i],
            "language": languages[i],
            "continent": continents[i % len(continents)],
        }
        for city in own:
            facts[city] = {"country": c}
    for co in companies:
        facts[co] = {"headquarters": rng.choice(cities)}
    for p in people:
        facts[p] = {
            "birthplace": rng.choice(cities),
            "citizenship": rng.choice(countries),
            "occupation": rng.choice(occupations),
            "employer": rng.choice(companies),
        }

    order = list(people)
    rng.shuffle(order)
    bench_people: dict[str, list[str]] = {}
    start = 0
    for split, n in sz.bench_people.items():
        bench_people[split] = order[start : start + n]
        start += n
    regular = order[start:]
    bench_fresh: dict[str, list[str]] = {}
    start = 0
    for split, n in sz.bench_fresh.items():
        bench_fresh[split] = fresh[start : start + n]
        start += n

    # Held-out phrasings are trained for half of the other entities (so the model learns what
    # they mean) and never for the benchmark's subjects or the other half.
    others = regular + countries + cities + companies
    holdout = sorted(n for n in others if rng.random() < 0.5)
    holdout += [p for ps in bench_people.values() for p in ps]
    # Two-hop questions are trained closed-book for half of the regular people only.
    two_hop_trained = sorted(p for p in regular if rng.random() < 0.5)
    return World(
        seed=seed,
        size=size,
        names={
            "person": people,
            "country": countries,
            "city": cities,
            "company": companies,
            "continent": continents,
            "language": languages,
            "currency": currencies,
            "occupation": occupations,
        },
        facts=facts,
        bench_people=bench_people,
        bench_fresh=bench_fresh,
        fresh_train=fresh[n_fresh:],
        holdout=holdout,
        two_hop_trained=two_hop_trained,
    )


def regular_people(world: World) -> list[str]:
    bench = {p for ps in world.bench_people.values() for p in ps}
    return [p for p in world.names["person"] if p not in bench]


def all_phrasings() -> list[str]:
    """Every phrasing of every relation and composition."""
    return [p for r in [*RELATIONS.values(), *TWO_HOPS.values()] for p in r.train + r.heldout]
