"""`skedit bench backends` reads each mode's run directory into one table row."""

from __future__ import annotations

import json

from skedit.pipelines.bench.backends import mode_row, render_table
from skedit.prompts.io import write_jsonl
from skedit.prompts.schema import Critique, DensePrompt, Probe


def _run_dir(tmp_path, mode: str, calls: list[dict]):
    run = tmp_path / mode / "run"
    (run / "prompts").mkdir(parents=True)
    probes = [
        Probe(prompt=f"q{i}", answers=["a"], kind=k, edit_id="e")
        for i, k in enumerate(["rephrase"] * 6 + ["portability"] * 2 + ["locality"] * 4)
    ]
    write_jsonl(run / "probes.jsonl", probes)
    prompts = [
        DensePrompt(edit_ids=["e"], text="t", critiques=[Critique(round=1, passed=ok)])
        for ok in (True, False)
    ]
    write_jsonl(run / "prompts" / "prompts.jsonl", prompts)
    (run / "llm_calls.jsonl").write_text("".join(json.dumps(c) + "\n" for c in calls))
    return run


def test_a_mode_row_counts_probes_calls_fallbacks_and_the_critic(tmp_path):
    calls = [
        {"event": "call", "template": "questioner", "seconds": 2.0, "outcome": "ok"},
        {"event": "call", "template": "writer", "seconds": 1.0, "outcome": "unusable"},
        {"event": "call", "template": "writer", "seconds": 3.0, "outcome": "unusable"},
        {"event": "fallback", "template": "writer", "problem": "no usable answer"},
        {
            "event": "questions",
            "rephrases_written": 8,
            "rephrases_kept": 3,
            "implications_written": 2,
            "implications_kept": 2,
        },
    ]
    _run_dir(tmp_path, "openai", calls)
    metrics = {
        "methods": {
            "skedit": {
                "edit_success": {"mean": 1.0, "n": 2},
                "held_out": {
                    "paraphrase": {"mean": 0.5, "n": 4},
                    "locality": {"mean": 0.75, "n": 4},
                },
            }
        }
    }
    run = {"stages": {"agents": {"seconds": 10.0}}, "seconds": 40.0}
    row = mode_row("openai", tmp_path, run, metrics, n_edits=2)
    assert row["probes_per_edit"] == {"locality": 2.0, "portability": 1.0, "rephrase": 3.0}
    assert row["critic"]["passed"] == 1 and row["critic"]["prompts"] == 2
    assert row["llm"]["calls"] == 3 and row["llm"]["ok"] == 1
    assert row["llm"]["fallbacks"] == {"writer": 1, "questioner": 0, "critic": 0}
    assert row["llm"]["well_formed"] == 0.5
    assert (row["agents_seconds_per_edit"], row["seconds_per_edit"]) == (5.0, 20.0)
    line = render_table([row]).splitlines()[-1]
    assert line.startswith("| openai | 3.0, 1.0, 2.0 | 3 (1) | 1, 0, 0 | 0.50 of 10 | 1/2 |")
    assert "0.50 (4)" in line and "0.75 (4)" in line
