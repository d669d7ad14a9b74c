import json

from skedit.pipelines.world.batches import FastEncoder
from skedit.pipelines.world.bench import benchmark_edits
from skedit.pipelines.world.corpus import DocSampler, build_tokenizer, compact_query
from skedit.pipelines.world.gen import RELATIONS, TWO_HOPS, all_phrasings, generate_world
from skedit.prompts.render import context_prefix
from skedit.sft.modelops import encode_input


def _bench_bytes(seed: int) -> str:
    world = generate_world("tiny", seed)
    return "".join(
        json.dumps(e.model_dump(mode="json"))
        for s in ("dev", "test")
        for e in benchmark_edits(world, s)
    )


def test_same_seed_same_benchmark_bytes_and_other_seed_other_world():
    assert _bench_bytes(0) == _bench_bytes(0)
    assert _bench_bytes(0) != _bench_bytes(1)
    assert generate_world("tiny", 0).names != generate_world("tiny", 1).names


def test_small_test_split_has_a_thousand_edits_with_safe_locality():
    world = generate_world("small", 0)
    edits = benchmark_edits(world, "test")
    assert len(edits) >= 1000
    edited = {(e.subject, e.relation) for e in edits}
    for e in edits:
        if e.kind == "modify":
            assert e.target_old == world.facts[e.subject][e.relation] != e.target_new
    same = [(e, p) for e in edits for p in e.locality if p.subkind == "same_subject"]
    assert same
    for e, p in same:  # no edit in the file touches a same-subject locality probe
        rel = next(
            r
            for r in RELATIONS
            if any(t.format(s=e.subject) == p.prompt for t in RELATIONS[r].train)
        )
        assert (e.subject, rel) not in edited


def test_portability_answers_follow_the_edited_fact():
    world = generate_world("tiny", 0)
    for e in benchmark_edits(world, "test"):
        for p in e.portability:
            hop = TWO_HOPS[p.subkind]
            assert p.answers == [world.facts[e.target_new][hop.second]]


def test_no_phrasing_is_a_prefix_of_another_at_the_answer_position():
    subject = "Zorb"
    phrasings = all_phrasings() + [compact_query(r) for r in RELATIONS]
    prompts = [p.format(s=subject).split() for p in phrasings]
    for i, a in enumerate(prompts):
        for j, b in enumerate(prompts):
            if i != j:
                assert b[: len(a)] != a, (a, b)


def test_rephrases_are_never_trained_for_benchmark_subjects():
    world = generate_world("tiny", 0)
    sampler = DocSampler(world, seed=0)
    bench = {p for ps in world.bench_people.values() for p in ps}
    heldout = {p.format(s=s) for s in bench for r in RELATIONS.values() for p in r.heldout}
    for _ in range(3000):
        doc = sampler.context_doc() if sampler.rng.random() < 0.5 else sampler.fact()
        assert doc.question not in heldout


def test_every_name_and_value_is_one_token_and_training_ids_match_encode_input():
    world = generate_world("tiny", 0)
    tok = build_tokenizer(world)
    for names in world.names.values():
        for n in names:
            assert len(tok(" " + n, add_special_tokens=False)["input_ids"]) == 1
            assert tok.unk_token_id not in tok(n, add_special_tokens=False)["input_ids"]
    enc = FastEncoder(tok)
    sampler = DocSampler(world, seed=0)
    for _ in range(50):
        doc = sampler.context_doc()
        ids, n_head = enc.encode(doc)
        assert ids[:n_head] == encode_input(tok, doc.question, context_prefix(doc.context))
        assert tok.unk_token_id not in ids
    person, city = world.names["person"][0], world.names["city"][0]
    text = f"{person} was born in {city}."
    assert tok.decode(enc.ids(text)) == text


def test_thread_chooser_moves_to_the_faster_count_and_back_when_load_changes():
    from skedit.pipelines.world.train import ThreadChooser

    ch = ThreadChooser([1, 2], every=20, probe=3, start=0)
    assert ch.current == 2

    def run(steps, seconds_by_threads):
        for step in steps:
            t = ch.threads_for(step)
            ch.record(step, t, seconds_by_threads[t])

    # another process keeps a core busy: 2 threads take 4 s a step, 1 thread 0.6 s
    run(range(0, 20), {1: 0.6, 2: 4.0})
    assert ch.current == 1
    # the other process ends: 2 threads are faster again and are taken back at the next probe
    run(range(20, 40), {1: 0.31, 2: 0.19})
    assert ch.current == 2
    # a count that is barely faster (under 10%) does not cause a switch
    run(range(40, 60), {1: 0.185, 2: 0.19})
    assert ch.current == 2
    assert ThreadChooser([1]).threads_for(100) == 1


def test_bf16_training_is_used_only_where_reported():
    """The report's precision is what the training forward pass really computes in: bf16 on
    a CPU with native bf16, float32 otherwise (emulated bf16 would be slower than float32)."""
    import dataclasses

    import torch

    from skedit.pipelines.world.train import TRAIN_SPECS, autocast_context, bf16_supported

    a = torch.ones(4, 4)
    for spec, want in (
        (TRAIN_SPECS["tiny"], "fp32"),
        (dataclasses.replace(TRAIN_SPECS["tiny"], autocast="bf16"), None),
    ):
        ctx, precision = autocast_context(spec)
        with ctx:
            dtype = (a @ a).dtype
        assert precision == (want or ("bf16" if bf16_supported() else "fp32"))
        assert dtype == {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]


def test_retention_text_teaches_new_facts_about_people_no_edit_touches():
    from skedit.pipelines.world.corpus import retention_lines
    from skedit.pipelines.world.gen import generate_world

    world = generate_world("tiny", 0)
    lines = retention_lines(world)
    # every relation of every context-only person, once; seeded
    assert len(lines) == 4 * len(world.fresh_train) and lines == retention_lines(world)
    edited = {p for ps in world.bench_people.values() for p in ps}
    edited |= {n for ns in world.bench_fresh.values() for n in ns}
    for line in lines:
        named = [w.strip("?.") for w in line.split()]
        assert any(n in world.fresh_train for n in named)
        assert not edited & set(named)
