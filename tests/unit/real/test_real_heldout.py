"""`skedit eval --probes FILE`: a held-out probe counts only where the base model answered it
as the fact says before the edit."""

from skedit.pipelines.eval.heldout import heldout_probes
from skedit.prompts.answers import first_answer
from skedit.prompts.io import write_jsonl
from skedit.prompts.schema import Edit, Probe
from skedit.sft.modelops import generate, load_model


def test_probes_the_base_model_got_wrong_are_dropped_and_counted(tiny_lm_dir, tmp_path):
    model, tok = load_model(tiny_lm_dir)
    para, other = "where was alice born ?", "where was bob born ?"
    said = [first_answer(g) for g in generate(model, tok, [para, other], max_new_tokens=8)]
    assert all(said), "the tiny model answers something"
    run = [
        Edit(id="a", subject="alice", prompt="alice was born in", target_new="rome"),
        Edit(id="b", subject="carol", prompt="carol lives in", target_new="paris"),
    ]
    held = [
        # the base model's own answer is the old one: the rephrase counts
        Edit(
            id="a",
            subject="alice",
            prompt="alice was born in",
            target_new="rome",
            target_old=said[0],
            rephrases=[para],
            locality=[
                Probe(prompt=other, answers=[said[1]], kind="locality", subkind="neighborhood"),
                Probe(
                    prompt="the capital of italy is",
                    answers=["nowhere-at-all"],
                    kind="locality",
                    subkind="neighborhood",
                ),
            ],
        ),
        # matched by subject and prompt; the base model never said this old answer
        Edit(
            id="zz",
            subject="carol",
            prompt="carol lives in",
            target_new="paris",
            target_old="nowhere-at-all",
            rephrases=["where does carol live ?"],
        ),
        Edit(id="c", subject="dave", prompt="dave works for", target_new="bob"),  # not in the run
    ]
    path = tmp_path / "heldout.jsonl"
    write_jsonl(path, held)
    out = heldout_probes(model, tok, run, path, progress=False)
    kinds = sorted((p.kind, p.edit_id, p.prompt) for p in out.probes)
    assert kinds == sorted(
        [
            ("edit", "a", "alice was born in"),
            ("edit", "b", "carol lives in"),
            ("rephrase", "a", para),
            ("locality", "a", other),
        ]
    )
    assert out.dropped == {"rephrase": 1, "neighborhood": 1}
    assert out.n_edits_matched == 2 and out.n_edits_unmatched == 1
    kept_loc = next(p for p in out.probes if p.kind == "locality")
    assert kept_loc.expected == said[1]  # scored against the base model's own answer


def test_a_neighbour_keeps_its_fact_when_the_rest_of_the_continuation_changes(
    tiny_lm_dir, tmp_path
):
    from skedit.pipelines.eval.metrics import locality_agreement

    model, tok = load_model(tiny_lm_dir)
    other = "where was bob born ?"
    (said,) = [first_answer(g) for g in generate(model, tok, [other], max_new_tokens=8)]
    gold = said.split()[0]  # the fact names the first word of what the base model said
    run = [Edit(id="a", subject="alice", prompt="alice was born in", target_new="rome")]
    held = [
        run[0].model_copy(
            update={
                "locality": [
                    Probe(prompt=other, answers=[gold], kind="locality", subkind="neighborhood")
                ]
            }
        )
    ]
    path = tmp_path / "held.jsonl"
    write_jsonl(path, held)
    out = heldout_probes(model, tok, run, path, progress=False)
    (loc,) = [p for p in out.probes if p.kind == "locality"]
    assert loc.expected == gold  # the fact, not the whole continuation
    # scored as the fact: the same answer with another tail is kept, another answer is not
    assert locality_agreement(f" {gold} in 2012.", loc.expected)
    assert not locality_agreement(" zzyzx in 1889.", loc.expected)
    # the continuation as the reference would have failed the first one
    assert not locality_agreement(" Paris in 2012.", "Paris in 1889.")
    assert locality_agreement(" Paris in 2012.", "Paris")
