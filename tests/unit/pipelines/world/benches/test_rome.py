"""The ROME/MEMIT/AlphaEdit benchmark runs end to end on the tiny world (slow: builds it)."""

from __future__ import annotations

import json

import pytest

from skedit.pipelines.cli import main


@pytest.mark.slow
def test_bench_writes_a_table_for_every_method(tiny_world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SKEDIT_CACHE", str(tmp_path / "cache"))
    cache = str(tiny_world.world_dir.parent.parent)
    out = tmp_path / "bench.json"
    hp = json.dumps({"rome": {"layer": 0}, "memit": {"layers": [0]}, "alphaedit": {"layers": [0]}})
    argv = ["--size", "tiny", "--cache-dir", cache, "--edits", "4", "--sequential", "2"]
    assert main(["bench", "rome", *argv, "--hparams", hp, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["methods"]) == {"base", "rome", "rome-plain", "memit", "alphaedit"}
    assert report["methods"]["rome-plain"]["hparams"]["edit_memory"] == 0.0
    for name in ("rome", "rome-plain", "memit", "alphaedit"):
        r = report["methods"][name]
        assert r["seconds_per_edit"] > 0
        assert 0.0 <= r["metrics"]["edit_success"]["mean"] <= 1.0
        assert len(r["sequential"]) == 3  # before, after batch 1, after batch 2
    assert "rome" in capsys.readouterr().out
