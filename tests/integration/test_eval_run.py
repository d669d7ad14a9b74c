"""`skedit eval DIR` on a hand-made run directory built around the tiny model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from skedit.pipelines.cli import main
from skedit.pipelines.editors import baselines as B
from skedit.pipelines.eval.sequential import split_batches
from skedit.prompts.answers import first_answer
from skedit.prompts.io import read_jsonl, write_jsonl
from skedit.prompts.render import fact_statement
from skedit.prompts.schema import DensePrompt, Edit, Probe, TransferExample
from skedit.sft.modelops import generate, load_model

FACTS = [
    ("alice", "alice lives in", "rome", ["where alice lives in"]),
    ("bob", "bob works for", "carol", ["bob works at"]),
    ("dave", "dave was born in", "paris", ["where was dave born ?"]),
    ("carol", "carol lives in", "london", ["where carol lives in"]),
]
LOCALITY = ["the capital of france is", "the country of rome is", "who lives in berlin ?"]


@pytest.fixture(scope="module")
def run_dir(tiny_lm_dir, tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("run")
    base, tok = load_model(tiny_lm_dir)
    loc_answers = [first_answer(g) for g in generate(base, tok, LOCALITY)]
    edits = []
    for i, (subj, prompt, target, reph) in enumerate(FACTS):
        loc = Probe(
            prompt=LOCALITY[i % 3], answers=["gold"], kind="locality", expected=loc_answers[i % 3]
        )
        port = Probe(prompt=f"the country of {subj} is", answers=["italy"], kind="portability")
        edits.append(
            Edit(
                subject=subj,
                prompt=prompt,
                target_new=target,
                rephrases=reph,
                relation="residence" if "lives" in prompt else "other",
                portability=[port],
                locality=[loc],
            )
        )
    probes = [p for e in edits for p in e.probes()]
    write_jsonl(d / "edits.jsonl", edits)
    write_jsonl(d / "probes.jsonl", probes)
    prompts = [
        DensePrompt(
            edit_ids=[e.id for e in edits],
            status="approved",
            text=" ".join(fact_statement(e.prompt, e.target_new) for e in edits),
        )
    ]
    write_jsonl(d / "prompts" / "prompts.jsonl", prompts)
    (d / "config.yaml").write_text(yaml.safe_dump({"model": str(tiny_lm_dir)}))
    # the "student": the tiny model fine-tuned on the edits (stands in for skedit's training)
    student = B.apply_ft_m(base, tok, edits, {"lr": 3e-2, "steps": 30, "modules": ["mlp"]})
    student.save_pretrained(d / "model")
    tok.save_pretrained(d / "model")
    (d / "heldout.txt").write_text(
        "\n".join(["the city of berlin is in germany .", "a country in europe is italy ."] * 4)
    )
    return d


def test_eval_json_shape_files_and_student_beats_base(run_dir, capsys):
    rc = main(
        [
            "eval",
            str(run_dir),
            "--baselines",
            "base,prompt,ft-m",
            "--json",
            "--heldout",
            str(run_dir / "heldout.txt"),
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["methods"]) == ["skedit", "base", "prompt", "ft-m"]
    for res in out["methods"].values():
        for m in ("edit_success", "paraphrase", "portability", "locality"):
            e = res[m]
            assert set(e) >= {"mean", "n", "ci", "token_accuracy"}
            assert e["ci"][0] <= e["mean"] <= e["ci"][1]
            assert set(e["token_accuracy"]) == {"mean", "n", "ci"}
        assert res["perplexity"]["mean"] > 1
    assert out["methods"]["skedit"]["edit_success"]["mean"] == 1.0
    assert out["methods"]["base"]["edit_success"]["mean"] < 1.0
    # the unedited model agrees with its own recorded answers: locality is 1 by construction
    assert out["methods"]["base"]["locality"]["mean"] == 1.0
    assert out["methods"]["base"]["locality"]["token_accuracy"]["mean"] == 1.0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["protocol"]["n_edits"] == 4 and "pre-edit" in metrics["protocol"]["locality"]
    assert metrics["methods"]["skedit"]["by_relation"]["residence"]["edit_success"]["n"] == 2
    assert len(metrics["rows"]["prompt"]) == 16 and all(
        r["context"] for r in metrics["rows"]["prompt"]
    )
    md = (run_dir / "report.md").read_text()
    assert md.index("## Protocol") < md.index("## Results") and "| skedit |" in md
    assert "data:image/png;base64," in (run_dir / "report.html").read_text()
    assert list(run_dir.glob("eval_cache/reference-*.json"))


def test_sequential_and_retention_curves(run_dir, tmp_path, capsys):
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    # skedit's sequential batches train on the transfer rows of each batch's edits
    edits = read_jsonl(d / "edits.jsonl", Edit)
    rows = [
        TransferExample(
            prompt=q, completion=" " + e.target_new, teacher_prompt=q, kind=k, edit_id=e.id
        )
        for e in edits
        for q, k in [(e.prompt, "edit"), *((r, "rephrase") for r in e.rephrases)]
    ]
    write_jsonl(d / "transfer.jsonl", rows)
    training = {"method": "sft", "max_steps": 3, "batch_size": 4, "learning_rate": 3e-2}
    base = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
    (d / "config.yaml").write_text(yaml.safe_dump({"model": base, "training": training}))
    rc = main(
        [
            "eval",
            str(d),
            "--baselines",
            "base,ft-m",
            "--sequential",
            "2",
            "--retention",
            "4",
            "--heldout",
            str(d / "heldout.txt"),
        ]
    )
    assert rc == 0
    assert "edit success" in capsys.readouterr().out  # the terminal table
    m = json.loads((d / "metrics.json").read_text())
    assert set(m["sequential"]["curves"]) == {"skedit", "ft-m"}
    for curve in m["sequential"]["curves"].values():
        assert [p["edits_so_far"] for p in curve] == [0, 2, 4]
        assert curve[1]["edit_success_seen"] is not None
    # the rows an edit's training used are marked, and held-out probes summarised apart
    assert m["methods"]["skedit"]["held_out"]["portability"]["n"] == 4
    ret = m["retention"]
    assert "ft-m" in ret["curves"] and [p["step"] for p in ret["curves"]["ft-m"]][0] == 0
    assert any("freeze" in k for k in ret["curves"])
    assert "skedit (no paraphrases)" in ret["curves"], ret["notes"]
    html = (d / "report.html").read_text()
    assert "plot-sequential" in html and "plot-retention" in html


def test_bad_input_is_a_clear_error(run_dir, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("training: {}\n")
    assert main(["eval", str(tmp_path)]) == 2
    assert "field 'model'" in capsys.readouterr().err
    assert main(["eval", str(run_dir), "--baselines", "base,romeo"]) == 2
    assert "unknown baseline 'romeo'" in capsys.readouterr().err
    assert main(["eval", str(run_dir), "--heldout", str(tmp_path / "missing.txt")]) == 2
    assert "held-out text file not found" in capsys.readouterr().err
    (tmp_path / "hp.yaml").write_text("ft-m: 3\n")
    assert main(["eval", str(run_dir), "--hparams", str(tmp_path / "hp.yaml")]) == 2
    assert "baseline name to a mapping" in capsys.readouterr().err


def test_split_batches():
    edits = [Edit(subject=str(i), prompt=f"{i} is", target_new="x") for i in range(7)]
    assert [len(b) for b in split_batches(edits, 3)] == [3, 2, 2]
    assert [len(b) for b in split_batches(edits[:2], 5)] == [1, 1]
