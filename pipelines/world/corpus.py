"""The world's tokenizer and training documents.

One token per name and per value (a word-level vocabulary over the world), so a context fact
binds as ``subject relation target`` and reading it is a copy. Every document is laid out
exactly as the teacher sees it: ``encode_input(tok, question, context_prefix(statements))``
followed by `` answer.`` and EOS; the loss is on the answer part only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from skedit.pipelines.world.gen import (
    PERSON_RELATIONS,
    RELATIONS,
    TWO_HOPS,
    World,
    all_phrasings,
    regular_people,
    two_hops_through,
)
from skedit.prompts.render import (
    compact_statement,
    context_prefix,
    fact_statement,
    relation_tables,
)

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
_PRETOKENIZE = r"\w+|[^\w\s]|\n"


def build_tokenizer(world: World):
    """A word-level ``PreTrainedTokenizerFast`` over the world's vocabulary (one id per name)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="removed", invert=True)
    words: dict[str, None] = {}
    texts = [*all_phrasings(), context_prefix("x"), *RELATIONS, ". , ? : ' !"]
    texts += [n for names in world.names.values() for n in names]
    texts += [*world.fresh_train, *(n for ns in world.bench_fresh.values() for n in ns)]
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(text):
            words.setdefault(piece)
    vocab = {w: i for i, w in enumerate([*SPECIALS, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    # WordPiece's decoder joins words with spaces and glues punctuation back ("Kelo.").
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    # BOS first, as Llama tokenizers do (``encode_input`` relies on it)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


@dataclass(frozen=True)
class Doc:
    """One training sequence: optional context, a question, its answer."""

    question: str
    answer: str
    context: str | None = None  # the dense prompt text (statements), without the prefix


# ---------------------------------------------------------------------------------------------
# documents


def compact_query(relation: str) -> str:
    """The question form of a compact statement (``"{s} birthplace"``), trained for every
    subject: it ties the compact statements of contexts to the model's own knowledge and is
    the plainest copy task, which is how reading a context is learnt first."""
    return "{s} " + relation


def _phrasings(world: World, subject: str, relation: str, holdout: set[str]) -> tuple[str, ...]:
    if relation in TWO_HOPS:
        h = TWO_HOPS[relation]
        return h.train if subject in holdout else h.train + h.heldout
    r = RELATIONS[relation]
    base = (*r.train, compact_query(relation))
    return base if subject in holdout else base + r.heldout


class DocSampler:
    """Draws training documents from the world with a seeded RNG.

    Mix: closed-book facts (training phrasings for everyone; held-out phrasings only for the
    entities not held out), closed-book two-hop questions for part of the people, and context
    documents with k = 1..16 statements (counterfactual facts about world people, facts about
    new people, world-true distractors) followed by a question about a context fact (directly
    or through one hop) or about something the context does not touch (answer: the world).
    """

    def __init__(
        self,
        world: World,
        seed: int,
        *,
        max_facts: int = 16,
        mix: tuple[float, float, float] = (0.45, 0.2, 0.13),
        table_share: float = 0.0,
        same_relation_share: float = 0.0,
    ) -> None:
        self.w = world
        # question kinds after the copy stage: direct, one hop, same subject other relation;
        # the rest asks about a subject the context does not mention
        self.mix = mix
        # contexts laid out as relation tables (``relation: s1 v1 s2 v2.``), the writer's dense
        # layout; these hold up to twice ``max_facts`` facts, as dense prompts do
        self.table_share = table_share
        # contexts whose facts all share one relation: only the subject tells them apart, so
        # copying "the value of that relation" fails and binding by subject is learnt
        self.same_relation_share = same_relation_share
        self.rng = random.Random(f"skedit-docs:{world.seed}:{seed}")
        self.max_facts = max_facts
        self.copy_stage = False  # set by the trainer for the first part of the run
        self.holdout = set(world.holdout)
        bench_fresh = {n for ns in world.bench_fresh.values() for n in ns}
        self.holdout |= bench_fresh
        self.fresh = list(world.fresh_train) + sorted(bench_fresh)
        self.people = list(world.names["person"])
        self.regular = regular_people(world)
        self.world_facts = [(s, r) for s, rels in world.facts.items() for r in rels]
        self.two_hop_people = list(world.two_hop_trained)

    # -- closed book
    def fact(self) -> Doc:
        s, r = self.rng.choice(self.world_facts)
        return Doc(
            self.rng.choice(_phrasings(self.w, s, r, self.holdout)).format(s=s), self.w.facts[s][r]
        )

    def two_hop(self) -> Doc:
        s = self.rng.choice(self.two_hop_people)
        h = self.rng.choice(list(TWO_HOPS.values()))
        return Doc(self.rng.choice(h.train + h.heldout).format(s=s), self.w.value(s, h.name))

    # -- context documents
    def _new_value(self, relation: str, old: str | None) -> str:
        kind = RELATIONS[relation].range
        while True:
            v = self.rng.choice(self.w.names[kind])
            if v != old:
                return v

    def _statement(self, s: str, r: str, v: str) -> str:
        if self.rng.random() < 0.8:
            return compact_statement(s, r, v)
        return fact_statement(self.rng.choice(RELATIONS[r].train).format(s=s), v)

    def context_doc(self, k: int | None = None) -> Doc:
        context, [(question, answer)] = self.context_group(k, 1)
        return Doc(question, answer, context)

    def context_group(
        self, k: int | None = None, n_questions: int = 1
    ) -> tuple[str, list[tuple[str, str]]]:
        """One context of ``k`` statements and ``n_questions`` (question, answer) pairs on it."""
        rng = self.rng
        table = rng.random() < self.table_share
        if table:  # long tables are what dense prompts are: the larger of two draws
            k = k or max(rng.randint(1, 2 * self.max_facts), rng.randint(1, 2 * self.max_facts))
        k = k or rng.randint(1, self.max_facts)
        facts: list[tuple[str, str, str]] = []  # (subject, relation, value) as the context says
        used: set[str] = set()
        if rng.random() < self.same_relation_share:
            r = rng.choice(PERSON_RELATIONS).name
            while len(facts) < k:
                s = rng.choice(self.people) if rng.random() < 0.55 else rng.choice(self.fresh)
                if s in used:
                    continue
                used.add(s)
                old = self.w.facts.get(s, {}).get(r)
                v = old if old and rng.random() < 0.15 else self._new_value(r, old)
                facts.append((s, r, v))
        while len(facts) < k:
            roll = rng.random()
            if roll < 0.45:  # counterfactual fact about a world person
                s = rng.choice(self.people)
            elif roll < 0.8:  # a new person who exists only in this context
                s = rng.choice(self.fresh)
            elif roll < 0.9:  # world-true distractor
                s = rng.choice(self.people)
            else:  # counterfactual fact about a country / city / company
                s, _ = rng.choice(self.world_facts)
            if s in used:
                continue
            used.add(s)
            kind = self.w.kind_of(s)
            rels = (
                [r.name for r in PERSON_RELATIONS]
                if kind in ("person", "fresh")
                else list(self.w.facts[s])
            )
            # new people often get several facts; world subjects one or two
            n_rel = rng.choice((1, 1, 2, 3)) if kind == "fresh" else rng.choice((1, 1, 1, 2))
            for r in rng.sample(rels, min(n_rel, len(rels), k - len(facts))):
                old = self.w.facts.get(s, {}).get(r)
                v = old if (roll >= 0.8 and roll < 0.9) else self._new_value(r, old)
                facts.append((s, r, v))
        rng.shuffle(facts)
        if table:
            context = " ".join(relation_tables(facts))
        else:
            context = " ".join(self._statement(*f) for f in facts)
        return context, [self._question(facts, used) for _ in range(n_questions)]

    def _question(self, facts: list[tuple[str, str, str]], used: set[str]) -> tuple[str, str]:
        rng = self.rng
        told = {(s, r): v for s, r, v in facts}
        roll = rng.random()
        direct, hop, same = self.mix
        hop += direct
        same += hop
        if self.copy_stage and rng.random() < 0.7:
            # first stage: mostly the plain copy (how reading a context is learnt)
            s, r, v = rng.choice(facts)
            if rng.random() < 0.6:
                return compact_query(r).format(s=s), v
            return rng.choice(_phrasings(self.w, s, r, self.holdout)).format(s=s), v
        if roll < direct:  # directly about a context fact
            s, r, v = rng.choice(facts)
            return rng.choice(_phrasings(self.w, s, r, self.holdout)).format(s=s), v
        if roll < hop:  # one hop beyond a context fact
            hops = [(s, h, v) for s, r, v in facts for h in two_hops_through(r)]
            if hops:
                s, h, v = rng.choice(hops)
                answer = told.get((v, h.second), self.w.facts[v][h.second])
                return rng.choice(_phrasings(self.w, s, h.name, self.holdout)).format(s=s), answer
        if roll < same:  # same subject, a relation the context does not state: the world
            cands = [
                (s, r2)
                for s, r, _ in facts
                if s in self.w.facts
                for r2 in self.w.facts[s]
                if (s, r2) not in told
            ]
            if cands:
                s, r = rng.choice(cands)
                return rng.choice(_phrasings(self.w, s, r, self.holdout)).format(s=s), self.w.facts[
                    s
                ][r]
        # a subject the context does not mention, often with a relation that it does
        rels_in_ctx = [r for _, r, _ in facts]
        while True:
            if rng.random() < 0.7:
                r = rng.choice(rels_in_ctx)
                dom = RELATIONS[r].domain
                pool = self.people if dom == "person" else self.w.names[dom]
                s = rng.choice(pool)
            else:
                s, r = rng.choice(self.world_facts)
            if s not in used:
                break
        if rng.random() < 0.15 and self.w.kind_of(s) == "person":
            h = rng.choice(list(TWO_HOPS.values()))
            return rng.choice(_phrasings(self.w, s, h.name, self.holdout)).format(
                s=s
            ), self.w.value(s, h.name)
        return rng.choice(_phrasings(self.w, s, r, self.holdout)).format(s=s), self.w.facts[s][r]


def heldout_lines(world: World) -> list[str]:
    """Plain world text not about the benchmark's people (perplexity)."""
    bench = {p for ps in world.bench_people.values() for p in ps}
    lines = []
    for s, rels in world.facts.items():
        if s in bench:
            continue
        for r, v in rels.items():
            for p in RELATIONS[r].train:
                lines.append(fact_statement(p.format(s=s), v))
    return lines


def retention_lines(world: World, seed: int = 0) -> list[str]:
    """New knowledge for retention fine-tuning: one closed-book fact for every relation of
    every person who only ever appears in training contexts (never the benchmark's), with
    seeded values, in a seeded order (1200 lines on the small world).

    Fine-tuning on text the model already predicts (:func:`heldout_lines`: its loss is about
    zero on a well-trained world) moves no weight, so it could not tell an edit that survives
    later training from one that does not; and a few lines repeated are learnt in a few steps.
    """
    rng = random.Random(f"skedit-retention:{world.seed}:{seed}")
    lines = []
    for s in world.fresh_train:
        for r in PERSON_RELATIONS:
            v = rng.choice(world.names[r.range])
            lines.append(fact_statement(rng.choice(r.train).format(s=s), v))
    rng.shuffle(lines)
    return lines


def key_stats_lines(world: World, relations_per_person: int = 2) -> list[str]:
    """Text for the key statistics of ROME/MEMIT/AlphaEdit: :func:`heldout_lines` plus facts
    about the *new* people the model met in training contexts (``fresh_train``; never the
    benchmark's), in the same training phrasings with values drawn from the world (seeded).

    Most benchmark edits insert facts about new names. Their keys share a "new name" component
    that the held-out lines (only known subjects) never show; without it in ``C``, ``C⁻¹ k`` of
    every such edit points the same way, so one edit's update moves the others' answers."""
    rng = random.Random(f"skedit-key-stats:{world.seed}")
    lines = list(heldout_lines(world))
    for s in world.fresh_train:
        for r in rng.sample(PERSON_RELATIONS, min(relations_per_person, len(PERSON_RELATIONS))):
            value = rng.choice(world.names[r.range])
            lines.append(fact_statement(rng.choice(r.train).format(s=s), value))
    rng.shuffle(lines)
    return lines


def write_lines(path: Path, lines: list[str]) -> None:
    from skedit.prompts.io import atomic_write_text

    atomic_write_text(path, "".join(line + "\n" for line in lines))
