"""Key statistics: computed once per (model, layer, corpus, samples), cached with provenance."""

from __future__ import annotations

import json

import pytest
import torch

from skedit.pipelines.editors import covariance as cov
from skedit.prompts.errors import SkeditError
from skedit.sft import arch
from skedit.sft.modelops import load_model


@pytest.fixture(scope="module")
def llama(tiny_lm_dir):
    torch.set_num_threads(1)
    return load_model(tiny_lm_dir, device="cpu")


def _count_forwards(monkeypatch):
    calls = []
    real = cov._accumulate

    def counting(*args, **kwargs):
        calls.append(args[2])  # the layers computed
        return real(*args, **kwargs)

    monkeypatch.setattr(cov, "_accumulate", counting)
    return calls


def test_statistics_are_cached_and_reused(llama, tmp_path, monkeypatch):
    model, tok = llama
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("bob lives in london\nthe capital of france is paris\n")
    calls = _count_forwards(monkeypatch)
    first = cov.key_second_moments(model, tok, [0, 1], corpus, cache_dir=tmp_path, progress=False)
    second = cov.key_second_moments(model, tok, [0, 1], corpus, cache_dir=tmp_path, progress=False)
    assert calls == [[0, 1]]  # the second call read the files
    for layer in (0, 1):
        m = arch.key_size(model, layer)
        assert first[layer].shape == (m, m)
        assert torch.equal(first[layer], second[layer])
        assert torch.allclose(first[layer], first[layer].T)
    provenance = [json.loads(p.read_text()) for p in (tmp_path / "stats").glob("*.json")]
    assert sorted(p["layer"] for p in provenance) == [0, 1]
    assert provenance[0]["corpus"] == f"file:{corpus.resolve()}"
    assert provenance[0]["tokens"] == 10 and provenance[0]["texts"] == 2
    assert provenance[0]["module"].endswith("mlp.down_proj")


def test_changed_corpus_or_sample_count_recomputes(llama, tmp_path, monkeypatch):
    model, tok = llama
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("bob lives in london\n")
    calls = _count_forwards(monkeypatch)
    a = cov.key_second_moments(model, tok, [0], corpus, cache_dir=tmp_path, progress=False)
    corpus.write_text("carol works for berlin\n")
    b = cov.key_second_moments(model, tok, [0], corpus, cache_dir=tmp_path, progress=False)
    cov.key_second_moments(model, tok, [0], corpus, samples=1, cache_dir=tmp_path, progress=False)
    assert len(calls) == 3
    assert not torch.allclose(a[0], b[0])


def test_statistics_equal_the_mean_outer_product_of_keys(llama, tmp_path):
    model, tok = llama
    texts = ["alice was born in paris", "bob lives in london"]
    got = cov.key_second_moments(model, tok, [1], texts, cache_dir=tmp_path, progress=False)[1]
    keys = []
    hook = arch.mlp_out(model, 1).register_forward_hook(lambda _m, a, _o: keys.append(a[0][0]))
    with torch.no_grad():
        for t in texts:  # one at a time: no padding involved
            model(input_ids=tok(t, return_tensors="pt")["input_ids"])
    hook.remove()
    k = torch.cat(keys)
    assert torch.allclose(got, k.T @ k / k.shape[0], atol=1e-6)


def test_corpus_sources_and_errors(tmp_path):
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"text": "a b"}\n\n{"text": "c"}\n')
    assert cov.load_corpus(jsonl).texts == ("a b", "c")
    jsonl.write_text('{"body": "a b"}\n')
    with pytest.raises(SkeditError, match="record 1"):
        cov.load_corpus(jsonl)
    with pytest.raises(SkeditError, match="corpus file not found"):
        cov.load_corpus(tmp_path / "missing.txt")
    assert cov.load_corpus(["x", "y"]).digest != cov.load_corpus(["x", "z"]).digest


def test_local_datasets_corpus(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["bob lives in london", ""]}).save_to_disk(tmp_path / "d")
    corpus = cov.load_corpus(f"dataset:{tmp_path / 'd'}")
    assert corpus.texts == ("bob lives in london",)
    with pytest.raises(SkeditError, match="no column 'body'"):
        cov.load_corpus(f"dataset:{tmp_path / 'd'}:train:body")


def test_world_key_stats_text_adds_new_people_but_no_benchmark_subject(tmp_path):
    """The world corpus for key statistics: held-out lines plus facts about the new people seen
    in training (their keys share a part the held-out lines never show), never the benchmark's."""
    from skedit.pipelines.world.build import key_stats_text
    from skedit.pipelines.world.corpus import heldout_lines, key_stats_lines
    from skedit.pipelines.world.gen import generate_world

    world = generate_world("tiny", seed=0)
    lines = key_stats_lines(world)
    assert lines == key_stats_lines(world)  # seeded
    assert set(heldout_lines(world)) <= set(lines)
    words = {w.strip(".?") for line in lines for w in line.split()}
    assert words & set(world.fresh_train)
    bench = {n for ns in world.bench_fresh.values() for n in ns}
    bench |= {p for ps in world.bench_people.values() for p in ps}
    assert not words & bench
    (tmp_path / "world.json").write_text(json.dumps(world.to_json()), encoding="utf-8")
    assert key_stats_text(tmp_path) == lines
    with pytest.raises(SkeditError, match="no world.json"):
        key_stats_text(tmp_path / "missing")
