"""The pieces of the real-model recipe: Wikidata rephrases and anchors from the questioner,
known answers where the teacher is wrong, the benchmark's batch choice and held-out filter."""

from __future__ import annotations

import pytest
import torch

from skedit.agents.config import AgentsConfig
from skedit.agents.nodes.questioner import generated_probes
from skedit.pipelines.data.real_facts import select_batch
from skedit.prompts import relations
from skedit.prompts.errors import SkeditError
from skedit.prompts.schema import DensePrompt, Edit, Probe
from skedit.sft.config import TrainConfig


def _edit(subject: str, prompt: str, new: str, old: str, rel: str = "P17") -> Edit:
    return Edit(subject=subject, prompt=prompt, target_new=new, target_old=old, relation=rel)


def test_a_wikidata_relation_gets_written_rephrases_wrappers_and_two_wordings_of_neighbours():
    edits = [
        _edit("Trento", "Trento is located in the country of", "France", "Italy"),
        _edit("Lyon", "Lyon is located in the country of", "Peru", "France"),
        _edit("Graz", "Graz is the capital of", "Tyrol", "Styria", "P1376"),
    ]
    cfg = AgentsConfig(generated_rephrases=3, other_subject_locality=1, general_locality=4)
    out = generated_probes(edits, cfg)
    trento = out[edits[0].id]
    written = relations.templates_for("P17", edits[0].prompt, "Trento", n=3)
    assert trento.rephrases == written
    assert len(written) > 3  # the written forms and the neutral wrappers of the prompt
    assert all("Trento" in r for r in trento.rephrases)
    assert edits[0].prompt not in trento.rephrases
    other = [p.prompt for p in trento.locality if p.subkind == "other_subject"]
    # one other subject (Lyon is edited on this relation: its answer is meant to change), asked
    # in the edit's own words and in the relation's first written form
    assert other[0] == "Graz is located in the country of"
    assert other[1:] == [relations.CLOZE["P17"][0].replace("{}", "Graz")]
    general = [p for e in out.values() for p in e.locality if p.subkind == "general"]
    assert sorted(p.prompt for p in general) == sorted(relations.GENERAL[:4])
    # spread over the batch: every edit anchors some general knowledge
    assert {p.edit_id for p in general} == {e.id for e in edits}


def test_well_known_subjects_of_the_relation_are_asked_the_edit_question_as_anchors():
    edits = [
        _edit("Trento", "Trento is located in the country of", "France", "Italy"),
        _edit("Rome", "Rome is located in the country of", "Peru", "Italy"),
    ]
    out = generated_probes(edits, AgentsConfig(relation_locality=3))
    cands = [p for p in out[edits[0].id].locality if p.subkind == "well_known"]
    want = [s for s in relations.WELL_KNOWN["P17"] if s != "Rome"]  # Rome: in the batch
    assert [p.prompt for p in cands] == [f"{s} is located in the country of" for s in want]
    assert all(p.expected is None and not p.answers for p in out[edits[0].id].locality)

    # once the base model has answered, 3 are kept: first those that share the old object
    from skedit.agents.nodes.questioner import keep_well_known

    answers = ["Italy", "", "France", "Italy, of course", "Spain"] + ["Peru"] * len(cands)
    for p, a in zip(cands, answers, strict=False):
        p.expected = a
    drop = keep_well_known(cands, edits, 3)
    kept = [p for p in cands if p.id not in drop]
    assert sorted(p.expected for p in kept) == ["France", "Italy", "Italy, of course"]


def test_edits_of_one_relation_anchor_different_well_known_subjects():
    from skedit.agents.nodes.questioner import keep_well_known

    # three edits move three subjects off Italy: each keeps 2 anchors, and together they
    # anchor 6 different subjects that the base model places in Italy, not the same 2 thrice
    edits = [
        _edit(s, f"{s} is located in the country of", "Peru", "Italy", "P17")
        for s in ("Trento", "Bari", "Pisa")
    ]
    out = generated_probes(edits, AgentsConfig(relation_locality=2))
    cands = [p for e in edits for p in out[e.id].locality if p.subkind == "well_known"]
    italian = set(relations.WELL_KNOWN["P17"][:8])
    for p in cands:
        p.expected = "Italy." if p.prompt.split(" is located")[0] in italian else "Chile."
    drop = keep_well_known(cands, edits, 2)
    kept = [p for p in cands if p.id not in drop]
    assert len(kept) == 6 and all(p.expected == "Italy." for p in kept)
    assert len({p.prompt for p in kept}) == 6
    assert {p.edit_id for p in kept} == {e.id for e in edits}


def test_look_alike_names_anchor_an_edit_to_its_own_subject():
    from skedit.agents.nodes.questioner import keep_well_known, near_miss_subjects

    # two glaciers moved off Antarctica: the look-alikes keep the head noun and borrow a name
    # from the edit that shares the old object first; no look-alike is a subject of the batch
    edits = [
        _edit(
            "Howard Glacier",
            "Howard Glacier belongs to the continent of",
            "Europe",
            "Antarctica",
            "P30",
        ),
        _edit(
            "Johnson Glacier",
            "Johnson Glacier belongs to the continent of",
            "Europe",
            "Antarctica",
            "P30",
        ),
        _edit(
            "Farouk of Egypt",
            "Farouk of Egypt is affiliated with the religion of",
            "Judaism",
            "Islam",
            "P140",
        ),
    ]
    names = near_miss_subjects(edits[0], edits, 4)
    # one word swapped, either one; Johnson Glacier is an edit (left out); the words come from
    # the edit that shares the old object first
    assert names == ["Howard Johnson", "Farouk Glacier", "Howard Farouk", "Egypt Glacier"]
    assert not {n.lower() for n in names} & {e.subject.lower() for e in edits}
    farouk = near_miss_subjects(edits[2], edits, 4)
    assert farouk[:2] == ["Howard of Egypt", "Farouk of Howard"]  # "of" is never swapped
    # a three-word subject keeps only its head noun: one swapped word would leave a name the
    # model cannot tell from the subject ("Second Czech Republic" for "Second Polish Republic")
    poland = _edit(
        "Second Polish Republic",
        "Second Polish Republic's capital city is",
        "Paris",
        "Warsaw",
        "P36",
    )
    for n in near_miss_subjects(poland, [poland, *edits], 6):
        first, second, last = n.split()
        assert last == "Republic" and first != "Second" and second != "Polish"

    cfg = AgentsConfig(near_miss_locality=2)
    out = generated_probes(edits, cfg)
    cands = [p for p in out[edits[0].id].locality if p.subkind == "near_miss"]
    # each look-alike in the edit's words and in the relation's first written form
    assert len(cands) == 3 * 2 * 2  # 3n look-alikes to choose from, in two forms
    assert cands[0].prompt.endswith("belongs to the continent of")
    assert cands[1].prompt == relations.CLOZE["P30"][0].replace("{}", names[0])
    # once the base model has answered, 2 are kept per edit, those at risk first
    for p in cands:
        p.expected = "Antarctica." if "Farouk" in p.prompt else "Asia."
    drop = keep_well_known(cands, edits, 2, "near_miss")
    kept = [p for p in cands if p.id not in drop]
    assert len(kept) == 2 and all("Farouk" in p.prompt for p in kept)
    # the well-known pool is not touched by the near-miss choice, nor the other way round
    assert keep_well_known(cands, edits, 2) == set()
    assert AgentsConfig().near_miss_locality == 0  # off unless a recipe asks for it
    assert not [
        p
        for e in generated_probes(edits, AgentsConfig()).values()
        for p in e.locality
        if p.subkind == "near_miss"
    ]


def test_associates_are_the_names_the_base_model_lists_beside_the_subject():
    from skedit.agents.nodes.questioner import associate_names, keep_well_known

    edits = [
        _edit("Henri Matisse", "Henri Matisse is a citizen of", "Japan", "France", "P27"),
        _edit("Pablo Picasso", "Pablo Picasso is a citizen of", "Peru", "Spain", "P27"),
    ]
    # Gemma-3-270M's continuation for Matisse: Picasso is an edit of the batch (its question
    # is meant to change), brackets go, a repeated or lower-case item is no name
    gen = " Pablo Picasso; Claude Monet (1840); Vincent van Gogh; Claude Monet; etc.\nToyota"
    assert associate_names(gen, edits, 5) == ["Claude Monet", "Vincent van Gogh"]
    assert associate_names(gen, edits, 1) == ["Claude Monet"]
    assert associate_names("", edits, 5) == []
    # the same pool rule as the other anchors: those the base model answers with the edit's
    # old object first
    cands = [
        Probe(
            prompt=f"{name} is a citizen of",
            kind="locality",
            subkind="associate",
            edit_id=edits[0].id,
            expected=answer,
        )
        for name, answer in [("Claude Monet", "France."), ("Vincent van Gogh", "the Netherlands.")]
    ]
    drop = keep_well_known(cands, edits, 1, "associate")
    assert [p.prompt for p in cands if p.id not in drop] == ["Claude Monet is a citizen of"]
    assert AgentsConfig().associate_locality == 0  # off unless a recipe asks for it


def test_general_anchors_never_name_a_subject_of_the_batch():
    subject = "Big Ben"  # a GENERAL prompt names it
    edits = [_edit(subject, "Big Ben is located in the city of", "Rome", "London", "P131")]
    out = generated_probes(edits, AgentsConfig(general_locality=len(relations.GENERAL)))
    prompts = [p.prompt for p in out[edits[0].id].locality if p.subkind == "general"]
    assert prompts and not any(subject in p for p in prompts)


@pytest.fixture(scope="module")
def tiny(tiny_lm_dir):
    from skedit.sft.modelops import load_model

    return load_model(tiny_lm_dir)


def _one_edit_batch() -> tuple[list[Probe], list[DensePrompt]]:
    """One approved prompt for edit e1 with an edit probe, a rephrase and an anchor."""
    probes = [
        Probe(prompt="alice was born in", answers=["rome"], kind="edit", edit_id="e1"),
        Probe(prompt="where was alice born ?", answers=["rome"], kind="rephrase", edit_id="e1"),
        Probe(prompt="bob lives in", kind="locality", edit_id="e1", expected="london"),
    ]
    return probes, [DensePrompt(edit_ids=["e1"], text="alice born rome .", status="approved")]


def test_known_targets_replace_wrong_teacher_answers_with_the_edit_target(tiny):
    from skedit.sft.kd import encode_example, topk_kd_loss
    from skedit.sft.transfer import build_transfer_set

    model, tok = tiny
    probes, prompts = _one_edit_batch()

    def build(known: bool):
        cfg = TrainConfig(
            topk=4,
            kd_teacher="topk",
            known_targets=known,
            known_prob=1.0,
            teacher_max_new_tokens=2,
        )
        return build_transfer_set(model, tok, prompts, probes, config=cfg, progress=False)

    plain, fixed = build(False), build(True)
    assert not any(r.known for r in plain)
    # a random tiny teacher does not answer "rome": the known answer is taught instead
    assert all("rome" not in r.completion for r in plain if r.kind != "locality")
    taught = [r for r in fixed if r.kind != "locality"]
    assert taught and all(r.known and r.completion.strip() == "rome" for r in taught)
    loc = [r for r in fixed if r.kind == "locality"]
    assert [r.completion.strip() for r in loc] == ["london"] and not loc[0].known
    # its stored top-k is the known answer with probability 1, so the KL is its cross-entropy
    row = taught[0]
    enc = encode_example(tok, row, topk=4)
    gold = enc["completion_ids"]
    assert [step[0] for step in enc["topk_ids"]] == gold
    assert all(step[0] == 0.0 and max(step[1:]) < -1e3 for step in enc["topk_logp"])
    logits = torch.randn(1, len(gold), model.config.vocab_size)
    kl = topk_kd_loss(
        logits,
        torch.tensor([enc["topk_ids"]]),
        torch.tensor([enc["topk_logp"]]),
        torch.ones(1, len(gold)),
    )
    ce = torch.nn.functional.cross_entropy(logits[0], torch.tensor(gold))
    assert kl.item() == pytest.approx(ce.item(), rel=1e-4)


def _seen_per_epoch(tiny, prompts, probes, **training) -> tuple[dict[str, int], str]:
    """How often each transfer row's prompt is seen per epoch of topk distillation, and the
    transfer set's fingerprint, with ``training`` on top of the known-answer settings."""
    from skedit.sft.modelops import encode_input
    from skedit.sft.train import build_dataset
    from skedit.sft.transfer import build_transfer_set, inputs_fingerprint

    model, tok = tiny
    cfg = TrainConfig(
        method="kd",
        topk=4,
        kd_teacher="topk",
        known_targets=True,
        teacher_max_new_tokens=2,
        **training,
    )
    rows = build_transfer_set(model, tok, prompts, probes, config=cfg, progress=False)
    data = build_dataset(tok, rows, "kd", topk=4)
    prompt_ids = [tuple(r["prompt_ids"]) for r in data]
    seen = {r.prompt: prompt_ids.count(tuple(encode_input(tok, r.prompt))) for r in rows}
    return seen, inputs_fingerprint(prompts, probes, cfg, "teacher")


def test_edit_weight_repeats_the_edit_prompts_rows_only(tiny):
    probes, prompts = _one_edit_batch()
    once, fp1 = _seen_per_epoch(tiny, prompts, probes, edit_weight=1.0)
    thrice, fp3 = _seen_per_epoch(tiny, prompts, probes, edit_weight=3.0)
    edit, rephrase, anchor = (p.prompt for p in probes)
    assert once == {edit: 1, rephrase: 1, anchor: 1}
    assert thrice == {edit: 3, rephrase: 1, anchor: 1}
    assert fp1 != fp3  # a changed weight rebuilds the transfer set, not reuses it


def test_locality_per_edit_repeats_an_anchor_once_per_edit_that_asks_it(tiny):
    # three edits move one question; "dave was born in" anchors all three, "dave lives in" one
    probes = [
        Probe(prompt=f"{s} was born in", answers=["rome"], kind="edit", edit_id=e)
        for s, e in [("alice", "e1"), ("bob", "e2"), ("carol", "e3")]
    ]
    probes += [
        Probe(prompt="dave was born in", kind="locality", edit_id=e, expected="london")
        for e in ["e1", "e2", "e3"]
    ]
    probes.append(Probe(prompt="dave lives in", kind="locality", edit_id="e1", expected="paris"))
    prompts = [
        DensePrompt(
            edit_ids=["e1", "e2"], text="alice born rome . bob born rome .", status="approved"
        ),
        DensePrompt(edit_ids=["e3"], text="carol born rome .", status="approved"),
    ]
    once, fp1 = _seen_per_epoch(tiny, prompts, probes)
    per_edit, fp2 = _seen_per_epoch(tiny, prompts, probes, locality_per_edit=True)
    assert once["dave was born in"] == 1 and once["dave lives in"] == 1
    assert per_edit["dave was born in"] == 3 and per_edit["dave lives in"] == 1
    assert per_edit["alice was born in"] == 1  # the edits' own rows are not repeated
    assert fp1 != fp2  # the option rebuilds the transfer set


def test_known_targets_with_a_live_teacher_is_refused():
    with pytest.raises(SkeditError, match="known_targets"):
        TrainConfig(method="kd", kd_teacher="live", known_targets=True)
    TrainConfig(method="sft", known_targets=True)  # the answers themselves: fine


def _record(case: int, subject: str, neighbours: list[str]) -> dict:
    return {
        "case_id": case,
        "requested_rewrite": {"prompt": "{} is in", "subject": subject},
        "neighborhood_prompts": [f"{s} is in" for s in neighbours],
    }


def test_the_batch_keeps_the_edits_whose_neighbours_it_does_not_edit():
    records = [
        _record(0, "A", ["B", "C"]),
        _record(1, "B", ["A", "C"]),
        _record(2, "C", ["A", "B"]),
        _record(3, "D", ["X", "Y"]),  # neighbours outside the batch: always measurable
    ]
    batch = select_batch(records, 2)
    subjects = {r["requested_rewrite"]["subject"] for r in batch}
    assert "D" in subjects and len(batch) == 2
    assert select_batch(records, 2) == batch  # deterministic
    assert len(select_batch(records, 10)) == 4


def test_heldout_locality_naming_an_edited_subject_is_dropped(tiny_lm_dir, tmp_path):
    from skedit.pipelines.eval.heldout import heldout_probes
    from skedit.prompts.io import write_jsonl
    from skedit.sft.modelops import load_model

    model, tok = load_model(tiny_lm_dir)
    run = [
        Edit(id="a", subject="alice", prompt="alice was born in", target_new="rome"),
        Edit(id="b", subject="bob", prompt="bob was born in", target_new="paris"),
    ]
    held = [
        run[0].model_copy(
            update={
                "locality": [
                    Probe(prompt="bob was born in", kind="locality", subkind="neighborhood"),
                    Probe(prompt="carol was born in", kind="locality", subkind="neighborhood"),
                ]
            }
        )
    ]
    path = tmp_path / "held.jsonl"
    write_jsonl(path, held)
    out = heldout_probes(model, tok, run, path, progress=False)
    assert [p.prompt for p in out.probes if p.kind == "locality"] == ["carol was born in"]
    assert out.names_edited_subject == {"neighborhood": 1}
    assert out.summary()["dropped_names_edited_subject"] == {"neighborhood": 1}


def test_where_the_teacher_says_the_known_answer_itself_its_distribution_is_kept(tiny):
    from skedit.prompts.render import context_prefix
    from skedit.sft.modelops import generate
    from skedit.sft.transfer import build_transfer_set

    model, tok = tiny
    text = "alice born rome ."
    (said,) = generate(model, tok, ["alice was born in"], prefixes=[context_prefix(text)])
    from skedit.prompts.answers import first_answer

    own = first_answer(said)
    assert own
    probes = [Probe(prompt="alice was born in", answers=[own], kind="edit", edit_id="e1")]
    prompts = [DensePrompt(edit_ids=["e1"], text=text, status="approved")]
    # a known_prob the teacher's own greedy answer already has: its distribution is kept
    cfg = TrainConfig(topk=4, kd_teacher="topk", known_targets=True, known_prob=1e-6)
    (row,) = build_transfer_set(model, tok, prompts, probes, config=cfg, progress=False)
    assert row.completion.strip() == own and not row.known
    assert row.teacher_topk[0][1][1] > -1e3  # a real distribution, not the point mass


def test_an_unsure_teacher_is_mixed_with_the_known_answer_up_to_known_prob():
    from skedit.sft.transfer import known_mixture

    # two answer tokens over a vocabulary of 4; the known answer is token 1 then token 2
    probs = torch.tensor([[0.35, 0.40, 0.20, 0.05], [0.02, 0.02, 0.94, 0.02]])
    probs = probs / probs.sum(-1, keepdim=True)
    gold = torch.tensor([1, 2])
    out, changed = known_mixture(probs.log(), gold, 0.9)
    p = out.exp()
    assert changed
    assert p[0, 1].item() == pytest.approx(0.9, abs=1e-5)  # pulled up to known_prob
    # the rest keeps the teacher's proportions (dark knowledge), scaled to the remainder
    assert (p[0, 0] / p[0, 2]).item() == pytest.approx((probs[0, 0] / probs[0, 2]).item())
    assert p[1].tolist() == pytest.approx(probs[1].tolist(), abs=1e-6)  # sure already: kept
    assert p.sum(-1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    # a teacher that is sure everywhere is left alone, and 1.0 means the known answer alone
    sure = torch.tensor([[0.02, 0.94, 0.02, 0.02]])
    assert known_mixture(sure.log(), torch.tensor([1]), 0.9)[1] is False
    alone, _ = known_mixture(probs.log(), gold, 1.0)
    assert alone.argmax(-1).tolist() == [1, 2] and alone.exp()[0, 0].item() < 1e-30


def test_the_critic_asks_fewer_probes_when_they_cannot_fail_or_are_capped():
    from skedit.agents.nodes.critic import FIGURE_LOCALITY, _checked

    probes = [Probe(prompt="q", answers=["a"], kind="edit", edit_id="e")]
    probes += [Probe(prompt=f"r{i}", answers=["a"], kind="rephrase", edit_id="e") for i in range(5)]
    probes += [Probe(prompt=f"l{i}", kind="locality", edit_id="e", expected="x") for i in range(5)]

    def kinds(cfg: AgentsConfig) -> list[str]:
        return [p.kind for p in _checked(probes, cfg)]

    assert kinds(AgentsConfig()) == [p.kind for p in probes]  # the defaults ask everything
    lean = kinds(AgentsConfig(min_locality=0.0, critic_rephrases=2))
    assert lean.count("rephrase") == 2 and lean.count("locality") == FIGURE_LOCALITY
    assert lean.count("edit") == 1


def test_the_runs_own_evaluation_can_score_the_first_probes_of_each_kind_per_edit():
    from skedit.pipelines.eval.metrics import first_per_edit
    from skedit.pipelines.run.config import parse_config

    probes = [
        Probe(prompt=f"{k}{i}{e}", answers=["a"], kind=k, edit_id=e)
        for e in ("x", "y")
        for k in ("rephrase", "locality")
        for i in range(5)
    ]
    kept = first_per_edit(probes, 2)
    assert [p.prompt for p in kept if p.edit_id == "x" and p.kind == "rephrase"] == [
        "rephrase0x",
        "rephrase1x",
    ]
    assert len(kept) == 8  # 2 of each kind for each edit
    cfg = parse_config({"evaluation": {"probes_per_edit": 3}})
    assert cfg.section("evaluation").probes_per_edit == 3


def test_a_wikidata_relation_id_is_never_written_into_the_teacher_context():
    from skedit.agents.backends.layout import layout_text
    from skedit.agents.nodes.writer import revise

    edits = [
        _edit("Hyder Ali", "Hyder Ali follows the religion of", "Judaism", "Islam", "P140"),
        _edit("Akbar", "Akbar follows the religion of", "Christianity", "Islam", "P140"),
    ]
    for layout in ("tables", "statements"):
        text = layout_text(edits, layout=layout)
        assert "P140" not in text
        assert "Hyder Ali follows the religion of Judaism." in text
    # a word relation (the world model's) is still written compactly and tabled
    world = [e.model_copy(update={"relation": "religion"}) for e in edits]
    assert layout_text(world, layout="tables").startswith("religion:")
    # the revision ladder has no plainer form for a sentence: the failing fact is split off
    by_id = {e.id: e for e in edits}
    group = {
        "edit_ids": [e.id for e in edits],
        "feedback": {"failed_edits": [edits[0].id]},
        "revisions": 1,
    }
    parts = revise(group, by_id, set(), set(), layout="tables")
    assert [p["edit_ids"] for p in parts] == [[edits[0].id], [edits[1].id]]


def test_auto_approve_teaches_failed_prompts_only_when_asked():
    from skedit.agents.workflow import auto_decision

    values = {"prompts": {"a": {"status": "passed"}, "b": {"status": "failed"}}}
    strict = auto_decision(values)
    assert strict.approve == ["a"] and "approve_failed" in strict.reject["b"]
    lenient = auto_decision(values, approve_failed=True)
    assert sorted(lenient.approve) == ["a", "b"] and not lenient.reject
