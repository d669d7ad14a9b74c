"""`skedit bench real` end to end on a small BPE model made here: it finds the facts the model
knows, edits some of them through the whole `skedit run`, measures skedit and baselines on the
held-out probes, and writes the table to JSON and into a README between markers."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from skedit.pipelines.cli import main
from skedit.prompts.answers import first_answer
from skedit.sft.modelops import generate, load_model

SUBJECTS = ["Alice", "Bob", "Carol", "Dave", "Lisbon", "Madrid", "Vienna", "Prague"]
FORMS = {
    "P1": ["{} lives in", "The home of {} is"],
    "P2": ["{} works for", "The employer of {} is"],
}


def _known_facts(model_dir: Path, path: Path) -> Path:
    """A known-facts file whose attributes are the model's own greedy answers: it knows them."""
    model, tok = load_model(model_dir)
    items = [(rel, forms[i % 2], s) for rel, forms in FORMS.items() for i, s in enumerate(SUBJECTS)]
    prompts = [f.replace("{}", s) for _, f, s in items]
    answers = [first_answer(g) for g in generate(model, tok, prompts, max_new_tokens=4)]
    records = [
        {
            "known_id": i,
            "subject": s,
            "attribute": a or "nothing",
            "template": f.replace("{}", "{}"),
            "prompt": p,
            "relation_id": rel,
        }
        for i, ((rel, f, s), p, a) in enumerate(zip(items, prompts, answers, strict=True))
    ]
    # two attributes per relation at least, so that every fact has a counterfactual
    for rel in FORMS:
        rs = [r for r in records if r["relation_id"] == rel]
        if len({r["attribute"] for r in rs}) < 2:
            rs[-1]["attribute"] = "elsewhere"
    path.write_text(json.dumps(records))
    return path


def test_bench_real_writes_the_table_for_skedit_and_the_baselines(bpe_lm_dir, tmp_path, capsys):
    facts = _known_facts(bpe_lm_dir, tmp_path / "known.json")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "agents": {
                    "min_edit_accuracy": 0.0,
                    "min_locality": 0.0,
                    "max_rounds": 1,
                    "general_locality": 2,
                    "generated_rephrases": 1,
                },
                "training": {
                    "method": "kd",
                    "kd_teacher": "topk",
                    "topk": 4,
                    "ce_weight": 0.0,
                    "known_targets": True,
                    "optim": "adamw_torch_fused",
                    "max_steps": 2,
                    "batch_size": 8,
                },
                "evaluation": {"baselines": [], "probes_per_edit": 1},
                "ft-m": {"steps": 2, "lr": 1e-3},
            }
        )
    )
    readme = tmp_path / "README.md"
    name = bpe_lm_dir.name  # the marker names the model (its folder name for a path)
    readme.write_text(f"# x\n<!-- bench-real:{name} -->\nold\n<!-- /bench-real:{name} -->\nend\n")
    out = tmp_path / "bench.json"
    argv = ["bench", "real", "--model", str(bpe_lm_dir), "--facts", str(facts), "--edits", "4"]
    argv += ["--out", str(out), "--recipe", str(recipe), "--methods", "skedit,base,ft-m"]
    rc = main([*argv, "--threads", "1", "--readme", str(readme)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert [r["method"] for r in result["table"]] == ["skedit", "base", "ft-m"]
    assert 4 <= result["data"]["known"] <= 16 and result["data"]["edits"] == 4
    work = Path(result["run_dir"]).parent
    # the editor saw the rewrites only; the held-out prompts stayed in heldout.json
    seen = json.loads((work / "edits.json").read_text())
    held = json.loads((work / "heldout.json").read_text())
    assert len(seen) == len(held) == 4
    assert all(not r["paraphrase_prompts"] and not r["neighborhood_prompts"] for r in seen)
    assert any(r["paraphrase_prompts"] for r in held)
    for row in result["table"]:
        assert row["edit"]["n"] == 4
        assert row["seconds_per_edit"] >= 0 and row["peak_rss_mb"] > 0
    base = result["table"][1]
    assert base["edit"]["mean"] == 0.0  # the counterfactual targets are new to the base model
    assert set(result["checks"]) >= {"edit_success>=0.90", "neighbourhood>=ft-m"}
    assert result["skedit_run"]["seconds"] > 0
    assert "| skedit |" in capsys.readouterr().out
    assert (Path(result["run_dir"]) / "report.html").is_file()
    # a rerun measures nothing again: the run's stages and each method's scores were saved
    assert sorted(p.name for p in (work / "methods").iterdir()) == [
        "base.json",
        "ft-m.json",
        "skedit.json",
    ]
    capsys.readouterr()
    assert main(argv) == 0
    again = json.loads(out.read_text())
    assert "measured before, reused" in capsys.readouterr().out
    assert again["table"] == result["table"]

    # --readme replaced what was between the model's markers with the command and the table
    text = readme.read_text()
    assert "old" not in text and text.endswith("end\n")
    assert "skedit bench real --model" in text and "| skedit |" in text

    # a new skedit recipe (another transfer set) keeps the baselines' saved scores, unless a
    # held-out probe is now trained on (it is then scored apart)
    from skedit.pipelines.bench.real import _method_key
    from skedit.pipelines.eval.runs import trained_prompts
    from skedit.prompts.schema import Probe

    run_dir = Path(result["run_dir"])
    asked = ["The held-out neighbour lives in", "The other held-out neighbour lives in"]
    probes = [Probe(prompt=q, kind="locality", expected="Paris") for q in asked]
    model = run_dir / "model" / "model.safetensors"

    def key() -> str:
        return _method_key("base", probes, {"lr": 1}, 0, trained_prompts(run_dir), model)

    before = key()
    transfer = run_dir / "transfer.jsonl"
    row = json.loads(transfer.read_text().splitlines()[0])
    with transfer.open("a") as f:
        f.write(json.dumps({**row, "prompt": "an anchor no method is scored on"}) + "\n")
    assert key() == before
    with transfer.open("a") as f:
        f.write(json.dumps({**row, "prompt": probes[0].prompt}) + "\n")
    assert key() != before
