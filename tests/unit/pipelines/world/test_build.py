import json
import time

import pytest

from skedit.pipelines.cli import main
from skedit.pipelines.world.build import build_world, heldout_text
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import read_jsonl
from skedit.prompts.schema import Edit
from skedit.sft.modelops import load_model


def test_tiny_world_has_a_loadable_model_and_benchmark(tiny_world):
    model, tok = load_model(tiny_world.model_dir)
    assert model.config.model_type == "llama"
    for split in ("dev", "test"):
        edits = read_jsonl(tiny_world.benchmark[split], Edit)
        assert edits and {e.kind for e in edits} == {"modify", "insert"}
        for e in edits:
            assert e.relation and e.rephrases and e.locality
            assert len(tok(" " + e.target_new, add_special_tokens=False)["input_ids"]) == 1
    assert (tiny_world.world_dir / "model" / "model.safetensors").is_file()
    lines = heldout_text(tiny_world.world_dir)
    bench_subjects = {e.subject for e in read_jsonl(tiny_world.benchmark["test"], Edit)}
    assert lines and not any(line.split()[0] in bench_subjects for line in lines)


def test_report_has_the_documented_keys(tiny_world):
    r = tiny_world.report
    assert set(r["benchmark"]) == {"dev", "test"}
    assert set(r["recall"]) == {"train", "heldout"}
    assert 0.0 <= r["two_hop"] <= 1.0
    assert set(r["in_context"]) == {"1", "4", "8", "16"}
    assert set(r["in_context_tables"]) == {"1", "4", "8", "16", "32"}
    for row in [*r["in_context"].values(), *r["in_context_tables"].values()]:
        assert set(row) == {"edit", "paraphrase", "portability", "locality"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert r["build_seconds"] > 0 and r["parameters"] > 0


def test_second_build_reuses_the_cache(tiny_world):
    cache = tiny_world.world_dir.parent.parent
    start = time.perf_counter()
    again = build_world(size="tiny", seed=0, cache_dir=cache, progress=False)
    assert time.perf_counter() - start < 5
    assert again.world_dir == tiny_world.world_dir
    assert again.report["build_seconds"] == tiny_world.report["build_seconds"]


def test_cli_build_and_info_print_json(tiny_world, capsys):
    cache = tiny_world.world_dir.parent.parent
    args = ["world", "build", "--size", "tiny", "--seed", "0", "--cache-dir", str(cache)]
    assert main([*args, "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    for key in ("model_dir", "build_seconds", "benchmark", "recall", "two_hop", "in_context"):
        assert key in built
    assert main(["world", "info", str(tiny_world.world_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["in_context"] == built["in_context"]
    assert main(["world", "info", str(tiny_world.world_dir)]) == 0
    out = capsys.readouterr().out
    assert "in context" in out and "as tables" in out


def test_info_without_a_folder_finds_the_cached_world_or_says_how_to_build_it(
    tiny_world, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SKEDIT_CACHE", str(tiny_world.world_dir.parent.parent))
    assert main(["world", "info", "--size", "tiny", "--seed", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config_hash"] in tiny_world.world_dir.name
    monkeypatch.setenv("SKEDIT_CACHE", str(tmp_path))
    assert main(["world", "info", "--size", "tiny", "--seed", "0"]) == 2
    assert "skedit world build --size tiny --seed 0" in capsys.readouterr().err


def test_info_on_a_folder_that_is_not_a_world_is_a_user_error(tmp_path, capsys):
    assert main(["world", "info", str(tmp_path)]) == 2
    assert "not a built world" in capsys.readouterr().err


def test_unknown_size_is_a_user_error(tmp_path):
    with pytest.raises(SkeditError, match="unknown world size"):
        build_world(size="huge", cache_dir=tmp_path)


def test_interrupted_build_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    import skedit.pipelines.world.train as wt

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(wt, "train_world_model", boom)
    with pytest.raises(KeyboardInterrupt):
        build_world(size="tiny", cache_dir=tmp_path, progress=False)
    worlds = tmp_path / "worlds"
    assert not worlds.exists() or not any(worlds.iterdir())
