"""Processes, not functions: a run killed mid-way resumes in a new process without redoing
finished shards, and the review round trip works from other processes through the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skedit.agents.config import AgentsConfig
from skedit.agents.workflow import run_agents
from skedit.pipelines.cli import main
from skedit.prompts.io import read_jsonl, write_jsonl
from skedit.prompts.schema import DensePrompt, Edit

SLOW_CLI = """
import sys, time
import skedit.sft.modelops as mo
_generate = mo.generate
def slow(*a, **k):  # the teacher takes a while: gives the test time to kill mid-way
    time.sleep(0.5)
    return _generate(*a, **k)
mo.generate = slow
from skedit.pipelines.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _skedit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "skedit.pipelines.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or _env(), timeout=120)


def _shard_lines(log: Path) -> list[tuple[str, str]]:
    """(pid, shard id) for every finished shard in the run's log."""
    if not log.exists():
        return []
    return re.findall(r"pid=(\d+) shard (\S+)", log.read_text())


def _edits() -> list[Edit]:
    # eight people, one relation each: every edit has unrelated questions to keep (the other
    # relation of its subject, its relation for the people it does not touch)
    people = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
    cities = ["rome", "paris", "london", "berlin", "madrid", "vienna", "oslo", "lisbon"]
    return [
        Edit(subject=s, prompt=f"{s} {verb} in", target_new=city, relation=verb)
        for i, (s, city) in enumerate(zip(people, cities, strict=True))
        for verb in [("lives", "works")[i % 2]]
    ]


@pytest.mark.slow  # two processes and a deliberately slow teacher: 30-90 s on a shared CPU
def test_killed_run_resumes_in_a_new_process_without_redoing_finished_shards(tmp_path, tiny_lm_dir):
    edits = _edits()
    edits_file = write_jsonl(tmp_path / "edits.jsonl", edits)
    run = tmp_path / "run"
    common = ["agents", "run", str(edits_file), "--run", str(run), "--model", str(tiny_lm_dir)]
    common += ["--max-facts", "1", "--max-rounds", "1", "--quiet"]

    script = tmp_path / "slow_cli.py"
    script.write_text(SLOW_CLI)
    proc = subprocess.Popen(
        [sys.executable, str(script), *common],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 90
    while len(_shard_lines(run / "agents.log")) < 3 and time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup, no goodbye
    proc.wait()
    first = [s for _, s in _shard_lines(run / "agents.log")]
    assert 3 <= len(first) < 8

    done = _skedit(*common)
    assert done.returncode == 0, done.stderr
    assert "Waiting for your review" in done.stdout
    lines = _shard_lines(run / "agents.log")
    second = [s for pid, s in lines if pid != str(proc.pid)]
    # finished shards are not redone. LangGraph saves a task's result in the background, so
    # the shards that finished in the last instants before SIGKILL may be lost and redone.
    assert set(second) & set(first) <= set(first[-2:])
    assert len(set(first) | set(second)) == 8 and len(second) <= 8 - len(first) + 2
    prompts = read_jsonl(run / "prompts" / "prompts.jsonl", DensePrompt)
    assert sorted(i for p in prompts for i in p.edit_ids) == sorted(e.id for e in edits)


def test_review_round_trip_from_other_processes(tmp_path, tiny_lm_dir, capsys):
    """Run here; list/reject through the CLI in-process; edit and approve in new processes."""
    run = tmp_path / "run"
    config = AgentsConfig(max_facts=1, max_rounds=1)
    status = run_agents(_edits(), run, model_path=tiny_lm_dir, config=config, progress=False)
    assert status == "awaiting_review"

    assert main(["review", str(run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["prompts"]
    assert len(rows) == 8
    for r in rows:
        assert {"id", "edit_ids", "tokens", "facts_per_100_tokens", "status"} <= set(r)
        assert 0 <= r["teacher_edit_accuracy"] <= 1 and 0 <= r["teacher_locality"] <= 1
    ids = sorted(r["id"] for r in rows)

    # a wrong id is a message, not a traceback, and changes nothing
    assert main(["review", str(run), "approve", "dp-nope"]) == 2
    assert "dp-nope" in capsys.readouterr().err

    assert main(["review", str(run), "reject", ids[1], "--reason", "wrong city"]) == 0
    out = capsys.readouterr().out
    assert "FACTS/100T" in out and "rejected" in out  # the table, readable
    # $EDITOR gets the text in a file; this "editor" appends to it with sed
    env = {**_env(), "EDITOR": "sed -i 1s/$/_and_more/", "VISUAL": ""}
    ed = _skedit("review", str(run), "edit", ids[2], env=env)
    assert ed.returncode == 0, ed.stderr
    assert main(["review", str(run), "--json"]) == 0
    waiting = json.loads(capsys.readouterr().out)["prompts"]
    failed = [r["id"] for r in waiting if r["verdict"] == "failed" and r["status"] != "rejected"]
    last = _skedit("review", str(run), "approve", "--all")
    assert last.returncode == 0 and "Review complete" in last.stdout
    # an agents-only directory goes on with `skedit sft`
    assert f"Next: skedit sft {run}" in last.stdout
    # approving what the critic failed is allowed, and said
    if failed:
        assert f"approving {len(failed)} prompt(s) that failed the critic" in last.stderr
        assert all(i in last.stderr for i in failed)

    final = {p.id: p for p in read_jsonl(run / "prompts" / "prompts.jsonl", DensePrompt)}
    assert final[ids[1]].status == "rejected" and final[ids[1]].reviewer_note == "wrong city"
    assert final[ids[2]].text.endswith("_and_more") and len(final[ids[2]].critiques) == 2
    assert all(final[i].status == "approved" for i in ids if i not in ids[1:3])
    assert (run / "prompts" / f"{ids[1]}.md").read_text().startswith(f"# {ids[1]} — rejected")
    assert len(read_jsonl(run / "edits.jsonl", Edit)) == 8 and (run / "probes.jsonl").exists()
