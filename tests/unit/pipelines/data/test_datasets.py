"""Each dataset format loads into the right edits and probes (real samples and fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skedit.pipelines.data.datasets import detect_format, load_edits
from skedit.prompts.io import read_jsonl
from skedit.prompts.schema import Edit

FIXTURES = next(d for d in Path(__file__).resolve().parents if d.name == "tests") / "fixtures"
# same place as conftest.REAL_SAMPLES (conftest is not importable under importlib mode)
REAL_SAMPLES = (
    next(d for d in Path(__file__).resolve().parents if (d / "pyproject.toml").is_file()).parent
    / "shared"
    / "data"
    / "real-samples"
)


def real(name: str) -> Path:
    path = REAL_SAMPLES / name
    if not path.exists():
        pytest.skip(f"real samples not present at {REAL_SAMPLES}")
    return path


def counts(edits: list[Edit]) -> dict[str, int]:
    out = {"edits": len(edits), "rephrase": 0, "portability": 0, "locality": 0}
    for e in edits:
        out["rephrase"] += len(e.rephrases)
        out["portability"] += len(e.portability)
        out["locality"] += len(e.locality)
    return out


def subkinds(edits: list[Edit], kind: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in edits:
        for p in getattr(e, kind):
            out[p.subkind] = out.get(p.subkind, 0) + 1
    return out


def test_knowedit_zsre_subset():
    res = load_edits(real("knowedit_zsre.sample.json"))
    assert (res.format, res.problems, res.skipped) == ("knowedit", [], 0)
    (e,) = res.edits
    assert (e.subject, e.target_new, e.target_old, e.kind) == (
        "Epaspidoceras",
        "Noctuidae",
        "Aspidoceratidae",
        "modify",
    )
    assert e.rephrases == ["What family are Epaspidoceras?"]
    assert [(p.subkind, p.answers) for p in e.portability] == [("Reasoning", ["Owlet moths"])]
    assert subkinds(res.edits, "locality") == {"Relation_Specificity": 2}
    assert all(p.edit_id == e.id for p in e.portability + e.locality)
    assert e.source == "knowedit_zsre.sample.json:0"


def test_knowedit_wiki_recent_alias_lists_and_insert():
    res = load_edits(real("knowedit_wiki_recent.sample.json"))
    (e,) = res.edits
    assert e.kind == "insert" and e.target_old is None  # no ground_truth: a new fact
    assert counts(res.edits) == {"edits": 1, "rephrase": 0, "portability": 4, "locality": 2}
    assert subkinds(res.edits, "portability") == {
        "Logical_Generalization": 1,
        "Reasoning": 2,
        "Subject_Aliasing": 1,
    }
    by_prompt = {p.prompt: p.answers for p in e.portability}
    # one answer with aliases, and several acceptable answers: both flatten to aliases
    assert by_prompt["Is Leo Arons still alive?"] == [
        "no",
        "incorrect",
        "false",
        "is not alive",
        "is dead",
    ]
    assert by_prompt[
        "The name of the head of government of the place of death of Leo Arons is"
    ] == ["Kai Wegner", "Kai Peter Wegner"]


def test_knowedit_wiki_counterfact_forgetfulness():
    res = load_edits(real("knowedit_wiki_counterfact.sample.json"))
    (e,) = res.edits
    assert e.target_old == "mayor of Vienna" and e.kind == "modify"
    assert subkinds(res.edits, "locality") == {"Relation_Specificity": 1, "Forgetfulness": 1}
    assert subkinds(res.edits, "portability") == {"Subject_Aliasing": 1}


def test_knowedit_wikibio():
    res = load_edits(real("knowedit_wikibio.sample.json"))
    assert res.format == "knowedit" and res.problems == []
    (e,) = res.edits
    assert e.subject == "john russell reynolds"
    assert e.prompt.startswith("This is a Wikipedia passage about john russell reynolds.")
    assert e.target_new.startswith("He received general education from his father")
    assert e.kind == "insert"
    assert [p.answers for p in e.locality] == [["medicine"], ["medicine"]]


def test_zsre_mend_eval_first20():
    path = real("zsre_mend_eval.first20.json")
    assert detect_format(path) == "zsre"
    res = load_edits(path)
    assert counts(res.edits) == {"edits": 20, "rephrase": 20, "portability": 0, "locality": 20}
    assert res.problems == []
    e = res.edits[0]
    assert (e.prompt, e.target_new, e.target_old) == (
        "What university did Watts Humphrey attend?",
        "University of Michigan",
        "Illinois Institute of Technology",
    )
    # the NQ prefix is not part of the question the model is asked
    assert e.locality[0].prompt == "who played desmond doss father in hacksaw ridge"
    assert e.locality[0].answers == ["Hugo Weaving"]
    assert res.edits[19].target_new == "Clairmont-Mayer"  # stray space in the data
    assert res.unused_fields == {"pred": 20, "cond": 20}


def test_counterfact():
    res = load_edits(FIXTURES / "counterfact.sample.json")
    assert res.format == "counterfact" and res.problems == []
    assert counts(res.edits) == {"edits": 3, "rephrase": 6, "portability": 0, "locality": 16}
    e = res.edits[0]
    assert e.id == "cf-0"
    assert e.prompt == "The mother tongue of Danielle Darrieux is"
    assert (e.target_new, e.target_old, e.kind) == ("English", "French", "modify")
    neigh = [p for p in e.locality if p.subkind == "neighborhood"]
    attr = [p for p in e.locality if p.subkind == "attribute"]
    assert len(neigh) == 4 and all(p.answers == ["French"] for p in neigh)
    assert len(attr) == 3 and all(p.answers == ["English"] for p in attr)
    assert res.edits[2].prompt == "Toko Yasuda, the"


def test_mquake_two_rewrites_are_two_edits():
    res = load_edits(FIXTURES / "mquake.sample.json")
    assert res.format == "mquake" and res.problems == []
    assert [e.id for e in res.edits] == ["mq-1-0", "mq-2-0", "mq-2-1"]
    assert counts(res.edits) == {"edits": 3, "rephrase": 3, "portability": 6, "locality": 1}
    messi, capital = res.edits[1], res.edits[2]
    assert capital.prompt == "The capital of Japan is" and capital.target_new == "Osaka"
    assert capital.rephrases == ["What is the capital of Japan?"]
    # the multi-hop questions need both edits: counted once, on the case's first edit
    assert len(messi.portability) == 3 and capital.portability == []
    assert messi.portability[0].answers == ["Osaka", "Ōsaka", "Osaka City"]
    assert messi.portability[0].subkind == "multi_hop"
    # the un-edited hop of case 1 must stay as it is
    (hop,) = res.edits[0].locality
    assert (hop.prompt, hop.answers, hop.subkind) == (
        "The head of state of Croatia is",
        ["Zoran Milanović", "Milanović"],
        "single_hop",
    )


def test_csv_with_header():
    res = load_edits(FIXTURES / "edits.csv")
    assert res.format == "csv" and res.problems == []
    assert [e.kind for e in res.edits] == ["modify", "modify", "insert", "modify"]
    assert res.edits[1].prompt == "Toko Yasuda, the"  # quoted comma
    assert res.edits[2].source == "edits.csv:4"  # line numbers count the header


def test_csv_without_header(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("Leo Arons,The place of death of Leo Arons is,Berlin\n")
    (e,) = load_edits(path).edits
    assert (e.subject, e.target_new, e.kind) == ("Leo Arons", "Berlin", "insert")


def test_skedit_jsonl():
    res = load_edits(FIXTURES / "edits.jsonl")
    assert res.format == "jsonl" and res.problems == []
    assert [e.id for e in res.edits][0] == "e-darrieux"
    assert res.edits[1].kind == "insert"  # no target_old, no kind
    assert res.edits[2].relation == "religion"
    assert res.edits[2].source == "edits.jsonl:4"  # the blank line 3 is skipped, still counted
    assert res.edits[0].locality[0].edit_id == "e-darrieux"


def test_records_as_jsonl_and_single_object(tmp_path):
    records = json.loads((FIXTURES / "counterfact.sample.json").read_text())
    lines = tmp_path / "cf.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert detect_format(lines) == "counterfact"
    assert [e.id for e in load_edits(lines).edits] == ["cf-0", "cf-1", "cf-2"]
    one = tmp_path / "one.json"
    one.write_text(json.dumps(records[0], indent=2))
    assert [e.id for e in load_edits(one).edits] == ["cf-0"]


def test_ids_are_stable_and_content_derived(tmp_path):
    a = load_edits(FIXTURES / "edits.csv").edits
    b = load_edits(FIXTURES / "edits.csv").edits
    assert [e.id for e in a] == [e.id for e in b]
    assert len({e.id for e in a}) == len(a)
    moved = tmp_path / "renamed.csv"
    moved.write_text((FIXTURES / "edits.csv").read_text())
    assert [e.id for e in load_edits(moved).edits] == [e.id for e in a]


@pytest.mark.parametrize(
    "name", ["counterfact.sample.json", "mquake.sample.json", "edits.csv", "edits.jsonl"]
)
def test_convert_round_trip(tmp_path, name):
    from skedit.pipelines.cli import main

    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(FIXTURES / name), str(out)]) == 0
    back = read_jsonl(out, Edit)
    original = load_edits(FIXTURES / name).edits
    assert [e.model_dump() for e in back] == [e.model_dump() for e in original]
    again = load_edits(out)
    assert again.format == "jsonl"
    assert [e.model_dump() for e in again.edits] == [e.model_dump() for e in original]
