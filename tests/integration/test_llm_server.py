"""The agents on a real LLM: llama.cpp's OpenAI-compatible server (llama-cpp-python[server])
running the shipped SmolLM2-135M-Instruct GGUF on a loopback port, end to end.

Slow: it needs the server extra (``pip install -e ".[server]"``, built from source) and the
model in the cache (``skedit model pull smollm2-135m``, fetched on first use)."""

from __future__ import annotations

import json

import pytest

from skedit.pipelines.cli import main
from skedit.pipelines.serve import LlamaServer, serve_model, server_missing
from skedit.prompts.errors import SkeditError
from skedit.prompts.io import read_jsonl
from skedit.prompts.schema import DensePrompt, Probe

pytestmark = pytest.mark.slow

EDITS = [
    ("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French", "P103"),
    ("Toko Yasuda", "Toko Yasuda, who plays the", "piano", "guitar", "P1303"),
    ("Apple A5", "Apple A5 was created by", "Google", "Apple", "P178"),
    ("Hyder Ali", "Hyder Ali follows the religion of", "Judaism", "Islam", "P140"),
    ("Thomas Joannes Stieltjes", "Thomas Joannes Stieltjes was born in", "Paris", "Zwolle", "P19"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if server_missing():
        pytest.skip(f"the llama.cpp server is not installed ({', '.join(server_missing())})")
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serve_model("smollm2-135m", log=log, threads=1) as srv:
        yield srv


def test_agents_run_with_the_openai_backend_against_the_real_server(server, tmp_path, capsys):
    edits = tmp_path / "edits.jsonl"
    edits.write_text(
        "".join(
            json.dumps({"subject": s, "prompt": p, "target_new": n, "target_old": o, "relation": r})
            + "\n"
            for s, p, n, o, r in EDITS
        )
    )
    run = tmp_path / "run"
    code = main(
        [
            "agents",
            "run",
            str(edits),
            "--run",
            str(run),
            "--model",
            "smollm2-135m",
            "--backend",
            "openai",
            "--base-url",
            server.url,
            "--llm-model",
            "smollm2-135m",
            "--llm-timeout",
            "120",
            "--max-rounds",
            "1",
        ]
    )
    assert code == 0
    prompts = read_jsonl(run / "prompts" / "prompts.jsonl", DensePrompt)
    probes = read_jsonl(run / "probes.jsonl", Probe)
    assert prompts and probes
    covered = {eid for p in prompts for eid in p.edit_ids}
    assert len(covered) == len(EDITS)
    # the critic measured every prompt with the teacher, whatever the LLM wrote
    assert all(p.critiques and p.critiques[-1].teacher_edit_accuracy is not None for p in prompts)
    rows = [json.loads(x) for x in (run / "llm_calls.jsonl").read_text().splitlines()]
    calls = [r for r in rows if r.get("event") == "call"]
    ok = [c for c in calls if c["outcome"] == "ok"]
    assert {c["template"] for c in ok} >= {"questioner", "writer"}
    assert all(c["server"] == "uvicorn" and c["served_model"] == "smollm2-135m" for c in ok)
    assert all(c["seconds"] > 0 and c["completion_tokens"] for c in ok)


def test_a_stopped_server_is_a_clear_error_and_a_second_stop_is_harmless(tmp_path):
    if server_missing():
        pytest.skip("the llama.cpp server is not installed")
    srv = serve_model("smollm2-135m", log=tmp_path / "server.log")
    url = srv.start()
    srv.stop()
    srv.stop()
    from skedit.agents.backends.openai import OpenAIBackend
    from skedit.agents.config import AgentsConfig
    from skedit.prompts.schema import Edit

    backend = OpenAIBackend(
        AgentsConfig(backend="openai", base_url=url, llm_model="smollm2-135m", llm_max_retries=0)
    )
    edit = Edit(subject="Toko Yasuda", prompt="Toko Yasuda, who plays the", target_new="piano")
    with pytest.raises(SkeditError, match="cannot reach"):
        backend.write([edit], sentence_form=set(), feedback=[])


def test_a_missing_model_file_is_named(tmp_path):
    with pytest.raises(SkeditError) as err:
        LlamaServer(tmp_path / "nope.gguf", alias="x").start()
    assert "nope.gguf" in err.value.render() or "not installed" in err.value.render()
