"""The agent stage on the synthetic world (tiny): its edits already carry every probe."""

from __future__ import annotations

import json

import pytest

from skedit.agents.config import AgentsConfig
from skedit.agents.workflow import run_agents
from skedit.pipelines.cli import main
from skedit.pipelines.data.datasets import load_edits
from skedit.pipelines.world.benches.agents import density_ceiling
from skedit.prompts.io import read_jsonl
from skedit.prompts.render import compact_statement, fact_statement
from skedit.prompts.schema import DensePrompt, Probe


@pytest.mark.slow  # builds the tiny world once per session (~30 s on an idle CPU)
def test_world_edits_become_relation_tables_with_recorded_locality(tiny_world, tmp_path):
    edits = load_edits(tiny_world.benchmark["dev"]).edits[:12]
    status = run_agents(
        edits,
        tmp_path / "run",
        model_path=tiny_world.model_dir,
        config=AgentsConfig(max_rounds=2, allow_conflicts=True),
        progress=False,
    )
    assert status == "awaiting_review"
    prompts = read_jsonl(tmp_path / "run" / "prompts" / "prompts.jsonl", DensePrompt)
    by_id = {e.id: e for e in edits}
    assert sorted(i for p in prompts for i in p.edit_ids) == sorted(by_id)
    for p in prompts:
        for i in p.edit_ids:
            e = by_id[i]
            assert e.subject in p.text and e.target_new in p.text
    # world edits name their relation: each fact is a row of its relation's table, or (alone
    # in its relation) a compact statement, or a full sentence when the critic found the teacher
    # could not read the short form
    for p in prompts:
        for e in (by_id[i] for i in p.edit_ids):
            row = f"{e.relation}: " in p.text and f" {e.subject} {e.target_new}" in p.text
            compact = compact_statement(e.subject, e.relation, e.target_new)
            assert row or compact in p.text or fact_statement(e.prompt, e.target_new) in p.text
    probes = read_jsonl(tmp_path / "run" / "probes.jsonl", Probe)
    # the dataset's probes are kept, locality answers come from the pre-edit model
    want = {q.id for e in edits for q in e.portability}
    port = [q for q in probes if q.kind == "portability"]
    assert want and want <= {q.id for q in port}
    # the rest are the batch's other multi-hop questions, unanswered (the teacher answers them)
    extra = [q for q in port if q.id not in want]
    assert all(not q.answers and by_id[q.edit_id].subject in q.prompt for q in extra)
    assert all(q.expected is not None for q in probes if q.kind == "locality")


@pytest.mark.slow
def test_benchmark_writes_its_json_with_both_runs(tiny_world, tmp_path, capsys):
    out = tmp_path / "bench.json"
    world_dir = tiny_world.model_dir.parent
    assert (
        main(["bench", "agents", "--edits", "8", "--out", str(out), "--world-dir", str(world_dir)])
        == 0
    )
    res = json.loads(out.read_text())
    for run in ("dense", "one_fact"):
        assert res[run]["facts"] == 8 and res[run]["wall_seconds"] > 0
        assert res[run]["facts_per_100_tokens_all_prompts"] > 0
    assert res["one_fact"]["prompts"] == 8
    # no finite prompt beats the limit of its own notation
    assert res["density_ratio_all_prompts"] <= res["density_ratio_ceiling"]
    out = capsys.readouterr().out
    assert "density ratio" in out and "limit, this text, frame free" in out


def test_density_ceiling_is_the_frame_shared_by_every_fact():
    # world counts: a compact fact is 4 tokens, the frame ("Context", ":", newline) 3, so 100
    # facts cost 100 * 7 one per prompt, and their dense prompts' text 100 * 4
    assert density_ceiling(700, 400) == 1.75
    # a notation of 2 tokens a fact, the same for single facts: 1 + 3 / 2
    assert density_ceiling(500, 200) == 2.5
    assert density_ceiling(0, 0) is None
