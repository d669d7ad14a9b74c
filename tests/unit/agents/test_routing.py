"""Pure parts of the agent graph: routers, the writer's revision ladder, the analyst's sharding."""

from __future__ import annotations

import pytest
from langgraph.graph import END

from skedit.agents.backends.layout import layout_text
from skedit.agents.config import AgentsConfig
from skedit.agents.nodes.analyst import normalise, shard
from skedit.agents.nodes.questioner import generated_probes, relation_templates
from skedit.agents.nodes.writer import revise
from skedit.agents.routing import fan_out, route_after_critic, route_after_review
from skedit.prompts.errors import SkeditError
from skedit.prompts.render import relation_tables, table_statement
from skedit.prompts.schema import Edit


def _edit(subject: str, rel: str, target: str, prompt: str | None = None) -> Edit:
    return Edit(
        subject=subject,
        prompt=prompt or f"The {rel} of {subject} is",
        target_new=target,
        relation=rel,
    )


def test_critic_router_loops_only_while_revision_is_asked_and_rounds_remain():
    revise_group = {"edit_ids": ["a"], "status": "revise"}
    passed = {"edit_ids": ["b"], "status": "passed"}
    assert (
        route_after_critic({"groups": [revise_group, passed], "round": 1, "max_rounds": 3})
        == "writer"
    )
    assert route_after_critic({"groups": [passed], "round": 1, "max_rounds": 3}) == END
    # the bound holds even if a group still asks for revision
    assert route_after_critic({"groups": [revise_group], "round": 3, "max_rounds": 3}) == END


def test_review_router_rechecks_edits_first_then_asks_again_until_all_decided():
    prompts = {"p1": {"status": "approved"}, "p2": {"status": "failed"}}
    assert route_after_review({"prompts": prompts, "recheck": ["p2"]}) == "recheck"
    assert route_after_review({"prompts": prompts, "recheck": []}) == "review"
    done = {"p1": {"status": "approved"}, "p2": {"status": "rejected"}, "p3": {"status": "edited"}}
    assert route_after_review({"prompts": done}) == "finish"


def test_fan_out_sends_each_shard_only_its_own_edits_and_probes():
    edits = [_edit("Zorb", "birthplace", "Paris"), _edit("Mira", "employer", "Acme")]
    probes = [
        {"prompt": "x", "kind": "edit", "edit_id": edits[0].id},
        {"prompt": "y", "kind": "edit", "edit_id": edits[1].id},
    ]
    state = {
        "edits": [e.model_dump(mode="json") for e in edits],
        "probes": probes,
        "shards": [
            {"id": "s1", "edit_ids": [edits[0].id], "max_rounds": 2},
            {"id": "s2", "edit_ids": [edits[1].id], "max_rounds": 2},
        ],
    }
    sends = fan_out(state)
    assert [s.node for s in sends] == ["shard", "shard"]
    assert [p["prompt"] for p in sends[1].arg["probes"]] == ["y"]
    assert sends[1].arg["edits"][0]["subject"] == "Mira"
    assert sends[0].arg["max_rounds"] == 2


def test_revision_ladder_sentence_form_then_split_then_halve():
    a, b, c = (
        _edit("Zorb", "birthplace", "Paris"),
        _edit("Zorb", "employer", "Acme"),
        _edit("Mira", "employer", "Tati"),
    )
    edits = {e.id: e for e in (a, b, c)}
    ids = [a.id, b.id, c.id]
    sentence: set[str] = set()
    fb = {"failed_edits": [b.id], "locality": [], "missing": [], "budget": False}
    # 1st revision: the failing compact fact is stated as a sentence, group kept
    out = revise({"edit_ids": ids, "feedback": fb, "revisions": 0}, edits, sentence)
    assert [g["edit_ids"] for g in out] == [ids] and sentence == {b.id}
    # 2nd: the failing fact is split off
    out = revise({"edit_ids": ids, "feedback": fb, "revisions": 1}, edits, sentence)
    assert [g["edit_ids"] for g in out] == [[b.id], [a.id, c.id]]
    # a locality failure halves the group: fewer facts leak less
    loc = {"failed_edits": [], "locality": [a.id], "missing": [], "budget": False}
    out = revise({"edit_ids": ids, "feedback": loc, "revisions": 0}, edits, sentence)
    assert [g["edit_ids"] for g in out] == [[a.id, b.id], [c.id]]
    assert all(g["status"] == "draft" and g["revisions"] == 1 for g in out)


def test_revision_ladder_takes_a_failing_table_row_out_before_writing_a_sentence():
    a, b, c = (
        _edit("Zorb", "birthplace", "Paris"),
        _edit("Kel", "birthplace", "Rome"),
        _edit("Mira", "employer", "Tati"),
    )
    edits = {e.id: e for e in (a, b, c)}
    ids = [a.id, b.id, c.id]
    sentence: set[str] = set()
    statement: set[str] = set()
    fb = {"failed_edits": [b.id, c.id], "locality": [], "missing": [], "budget": False}
    group = {"edit_ids": ids, "feedback": fb, "revisions": 0}
    out = revise(group, edits, sentence, statement, layout="tables")
    # Kel's row leaves the birthplace table (a compact statement, 4 tokens); Mira's employer
    # fact was already compact (alone in its relation), so it becomes a sentence
    assert [g["edit_ids"] for g in out] == [ids]
    assert statement == {b.id} and sentence == {c.id}
    text = layout_text([a, b, c], sentence_form=sentence, statement_form=statement)
    assert text == "Zorb birthplace Paris. Kel birthplace Rome. The employer of Mira is Tati."


def test_more_multi_hop_questions_come_from_the_batch_without_answers():
    from skedit.prompts.schema import Probe

    def hop(e, text, answer, subkind):
        return Probe(
            prompt=text, answers=[answer], kind="portability", edit_id=e.id, subkind=subkind
        )

    a, b = _edit("Zorb", "citizenship", "Pila"), _edit("Mira", "citizenship", "Kodo")
    a = a.model_copy(
        update={"portability": [hop(a, "The capital of Zorb's country is", "X", "cap")]}
    )
    b = b.model_copy(
        update={
            "portability": [
                hop(b, "Mira pays in", "Y", "currency"),
                hop(b, "The capital of Mira's country is", "Z", "cap"),
            ]
        }
    )
    out = generated_probes([a, b], AgentsConfig(generated_portability=3))
    new_a = [p for p in out[a.id].portability if not p.answers]
    assert [(p.prompt, p.subkind) for p in new_a] == [("Zorb pays in", "currency")]
    assert [p.prompt for p in out[b.id].portability if not p.answers] == []
    off = generated_probes([a, b], AgentsConfig(generated_portability=0))
    assert all(p.answers for e in off.values() for p in e.portability)


def test_shards_respect_token_budget_and_max_facts_and_keep_subjects_together():
    edits = [
        _edit("Zorb", "birthplace", "Paris"),
        _edit("Mira", "employer", "Acme"),
        _edit("Zorb", "employer", "Tati"),
        _edit("Kel", "birthplace", "Rome"),
    ]
    words = lambda text: len(text.split())  # noqa: E731 - a stand-in tokenizer
    shards = shard(edits, max_tokens=100, max_facts=2, context_tokens=words)
    assert [[e.subject for e in s] for s in shards] == [["Zorb", "Zorb"], ["Mira", "Kel"]]
    one = shard(edits, max_tokens=100, max_facts=1, context_tokens=words)
    assert [len(s) for s in one] == [1, 1, 1, 1]
    # "Context: Zorb birthplace Paris." is 4 words, two facts 7: a budget of 8 fits two, not three
    tight = shard(edits, max_tokens=8, max_facts=16, context_tokens=words)
    assert [[e.subject for e in s] for s in tight] == [["Zorb", "Zorb"], ["Mira", "Kel"]]
    assert shard(edits, max_tokens=6, max_facts=16, context_tokens=words)[0][0].subject == "Zorb"
    assert sum(len(s) for s in shard(edits, max_tokens=6, max_facts=16, context_tokens=words)) == 4


def test_relation_tables_write_each_relation_once():
    facts = [
        ("Zorb", "birthplace", "Paris"),
        ("Mira", "employer", "Acme"),
        ("Kel", "birthplace", "Rome"),
    ]
    # a relation with one fact stays a compact statement (a one-row table is a word longer)
    assert relation_tables(facts) == ["birthplace: Zorb Paris Kel Rome.", "Mira employer Acme."]
    # rows are only told apart by commas when a name has several words
    two_words = table_statement("birthplace", [("Ada Lovelace", "London"), ("Kel", "Rome")])
    assert two_words == "birthplace: Ada Lovelace London, Kel Rome."


def test_table_layout_leaves_sentence_form_and_unlabelled_facts_as_statements():
    a, b, c = (
        _edit("Zorb", "birthplace", "Paris"),
        _edit("Kel", "birthplace", "Rome"),
        _edit("Mira", "birthplace", "Oslo"),
    )
    free = Edit(subject="Vex", prompt="Vex likes", target_new="tea")
    text = layout_text([a, free, b, c], sentence_form={b.id})
    assert text == "birthplace: Zorb Paris Mira Oslo. Vex likes tea. The birthplace of Kel is Rome."
    plain = layout_text([a, c], layout="statements")
    assert plain == "Zorb birthplace Paris. Mira birthplace Oslo."


def test_table_shards_hold_whole_relations_and_split_big_ones_evenly():
    people = [f"P{i}" for i in range(7)]
    edits = [_edit(p, "birthplace", "Rome") for p in people] + [
        _edit("Zorb", "employer", "Acme"),
        _edit("Mira", "employer", "Tati"),
    ]
    words = lambda text: len(text.split())  # noqa: E731 - a stand-in tokenizer
    shards = shard(edits, max_tokens=100, max_facts=4, context_tokens=words, layout="tables")
    # 7 birthplaces at 4 a shard: 3 + 4 (not 4 + 3 with an employer squeezed in), employers last
    assert [[e.relation for e in s] for s in shards] == [
        ["birthplace"] * 3,
        ["birthplace"] * 4,
        ["employer"] * 2,
    ]
    # the budget is counted on the table text: header once, then two words a fact
    tight = shard(edits, max_tokens=9, max_facts=16, context_tokens=words, layout="tables")
    assert max(len(s) for s in tight) == 4 and sum(len(s) for s in tight) == 9
    # facts written one by one (no relation here) have their own, smaller cap
    free = [Edit(subject=f"S{i}", prompt=f"S{i} likes", target_new="tea") for i in range(5)]
    capped = shard(
        edits + free,
        max_tokens=1000,
        max_facts=32,
        context_tokens=words,
        layout="tables",
        max_statements=2,
    )
    assert [len(s) for s in capped] == [11, 2, 1]  # 9 table rows + 2 sentences, then 2, 1


def test_conflicting_edits_stop_with_both_records_named_unless_allowed():
    a = Edit(subject="Zorb", prompt="Zorb was born in", target_new="Paris", source="f.jsonl:1")
    b = Edit(subject="Zorb", prompt="Zorb was born in", target_new="Rome", source="f.jsonl:2")
    with pytest.raises(SkeditError) as err:
        normalise([a, b], AgentsConfig())
    assert "f.jsonl:1" in str(err.value) and "f.jsonl:2" in str(err.value)
    kept, notes = normalise([a, b], AgentsConfig(allow_conflicts=True))
    assert [e.target_new for e in kept] == ["Paris"] and "conflict" in notes[0]


def test_questioner_rules_fill_rephrases_and_locality_from_relation_templates():
    edits = [
        _edit("Zorb", "birthplace", "Paris", "Zorb was born in"),
        _edit("Mira", "birthplace", "Rome", "The birthplace of Mira is"),
        _edit("Mira", "employer", "Acme", "Mira works for"),
    ]
    assert relation_templates(edits)["birthplace"] == ["{} was born in", "The birthplace of {} is"]
    out = generated_probes(edits, AgentsConfig(same_subject_locality=2, other_subject_locality=1))
    zorb = out[edits[0].id]
    assert zorb.rephrases == ["The birthplace of Zorb is"]
    loc = {(p.subkind, p.prompt) for p in zorb.locality}
    # Zorb is not edited on employer: its old employer must stay
    assert ("same_subject", "Zorb works for") in loc
    # Mira is edited on both relations: no same-subject locality probe may ask an edited relation
    assert all(p.subkind != "same_subject" for p in out[edits[1].id].locality)
    # and no probe about another subject may ask what the batch edits (Mira's birthplace is
    # edited: "Mira was born in" would have to keep its old answer and give Rome at once)
    asked = {e.prompt.lower() for e in edits}
    for e in out.values():
        for p in e.locality:
            assert p.prompt.lower() not in asked
            assert (p.subkind, p.prompt) != ("other_subject", "Mira was born in")
    # Mira's employer question asked about Zorb, who keeps his employer: a neighbourhood probe
    assert ("other_subject", "Zorb works for") in {
        (p.subkind, p.prompt) for p in out[edits[2].id].locality
    }


def test_unlabelled_neighbourhood_probes_never_repeat_an_edit_prompt():
    # a CSV without relations: each edit's own question asked about the other subjects
    edits = [
        Edit(subject="Toshos", prompt="The birthplace of Toshos is", target_new="Pitrestur"),
        Edit(subject="Nivalek", prompt="The birthplace of Nivalek is", target_new="Tatrakre"),
        Edit(subject="Grabax", prompt="Grabax works as a", target_new="potter"),
    ]
    out = generated_probes(edits, AgentsConfig(other_subject_locality=2))
    toshos = [p.prompt for p in out[edits[0].id].locality]
    assert toshos == ["The birthplace of Grabax is"]  # Nivalek's is an edit prompt
    assert [p.prompt for p in out[edits[2].id].locality] == [
        "Toshos works as a",
        "Nivalek works as a",
    ]


def test_names_the_teacher_tokenizer_does_not_know_are_reported_by_record():
    from skedit.agents.nodes.analyst import unknown_words
    from skedit.pipelines.world.corpus import build_tokenizer
    from skedit.pipelines.world.gen import generate_world

    world = generate_world("tiny", 0)
    tok = build_tokenizer(world)  # word-level: the world's names only
    person = world.names["person"][0]
    city = world.names["city"][0]
    known = Edit(subject=person, prompt=f"{person} was born in", target_new=city)
    foreign = Edit(
        subject="Adelaide Ferro",
        prompt="Adelaide Ferro was born in",
        target_new=city,
        source="facts.csv:3",
    )
    assert unknown_words([known], tok) == []
    (note,) = unknown_words([known, foreign], tok)
    assert note.startswith("1 edit(s)") and "facts.csv:3: 'Adelaide', 'Ferro'" in note
