"""Bad input ends in a message that names file, record and field, and exit code 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from skedit.pipelines.cli import main
from skedit.pipelines.data import readers as formats_io
from skedit.pipelines.data.datasets import load_edits
from skedit.prompts.errors import SkeditError

FIXTURES = next(d for d in Path(__file__).resolve().parents if d.name == "tests") / "fixtures"
BROKEN = FIXTURES / "broken"


def inspect(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", "inspect", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def inspect_json(capsys, *args: str) -> tuple[int, dict]:
    code, out, _ = inspect(capsys, "--json", *args)
    return code, json.loads(out)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("empty.json", ["empty.json", "the file is empty"]),
        ("truncated.json", ["truncated.json", "record 1", "truncated JSON", "line 10"]),
        ("wrong_types.json", ["record 1", "field 'target_new'", "expected a string", "42"]),
        ("latin1.jsonl", ["latin1.jsonl", "line 2", "not UTF-8", "0xf3"]),
        ("bad_line.jsonl", ["line 2", "invalid JSON", "--skip-invalid"]),
    ],
)
def test_unreadable_or_invalid_records_exit_2(capsys, name, expected):
    code, out, err = inspect(capsys, str(BROKEN / name))
    assert code == 2
    assert out == ""
    for text in expected:
        assert text in err


def test_skip_invalid_loads_the_rest_and_says_why(capsys):
    code, obj = inspect_json(capsys, "--skip-invalid", str(BROKEN / "wrong_types.json"))
    assert code == 2  # the file still has a problem
    assert obj["edits"] == 2 and obj["skipped"] == 1
    (problem,) = obj["problems"]
    assert (problem["record"], problem["field"]) == (1, "target_new")
    assert "expected a string" in problem["message"]

    res = load_edits(BROKEN / "bad_line.jsonl", skip_invalid=True)
    assert (len(res.edits), res.skipped, res.invalid[0].record) == (2, 1, 2)


def test_truncated_json_with_skip_invalid_keeps_whole_records():
    res = load_edits(BROKEN / "truncated.json", skip_invalid=True)
    assert [e.subject for e in res.edits] == ["Epaspidoceras"]
    assert res.skipped == 1 and "truncated" in res.problems[0].message


def test_non_utf8_inside_a_json_list(tmp_path, capsys):
    path = tmp_path / "latin1.json"
    text = json.dumps(
        [{"subject": "Léon", "prompt": "Léon lives in", "target_new": "Paris"}], ensure_ascii=False
    )
    path.write_bytes(text.encode("latin-1"))
    code, _, err = inspect(capsys, str(path))
    assert code == 2 and "not UTF-8" in err and "byte offset" in err and "iconv" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("   \n\n", "only whitespace"),
        ("[]", "no records"),
        ('[{"foo": 1}]', "cannot tell the dataset format"),
        ('[{"subject": "a", "prompt": "a b", "target_new": "c"}] junk', "extra data"),
        ('[{"subject": "a" "prompt": "a b"}]', "invalid JSON in record 0 at line 1"),
        ("[1, 2]", "not an object"),
        ("subject,prompt,target_new\n", "no edits"),
    ],
)
def test_other_bad_files(tmp_path, capsys, content, message):
    path = tmp_path / ("data.csv" if content.startswith("subject") else "data.json")
    path.write_text(content)
    code, _, err = inspect(capsys, str(path))
    assert code == 2 and message in err


def test_missing_file_and_folder(tmp_path, capsys):
    code, _, err = inspect(capsys, str(tmp_path / "nope.json"))
    assert code == 2 and "file not found" in err
    code, _, err = inspect(capsys, str(tmp_path))
    assert code == 2 and "folder" in err


def test_json_output_on_error(capsys):
    code, obj = inspect_json(capsys, str(BROKEN / "wrong_types.json"))
    assert code == 2 and "expected a string" in obj["error"]
    assert obj["problems"][0]["record"] == 1 and obj["problems"][0]["field"] == "target_new"


def test_100mb_of_junk_is_refused_quickly(tmp_path, capsys):
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:  # one unterminated 100 MB string
        fh.write(b'["')
        fh.write(b"a" * (100 << 20))
    code, _, err = inspect(capsys, str(big))
    assert code == 2 and "larger than" in err
    noise = tmp_path / "noise.jsonl"
    noise.write_bytes(os.urandom(1 << 20) * 100)
    code, _, err = inspect(capsys, str(noise))
    assert code == 2 and ("not UTF-8" in err or "not JSON" in err)


def test_json_list_is_streamed(tmp_path, monkeypatch):
    """Tiny chunks give the same edits, and record 0 comes out before the file is read."""
    monkeypatch.setattr(formats_io, "CHUNK_BYTES", 7)
    small = load_edits(FIXTURES / "mquake.sample.json").edits
    monkeypatch.undo()
    assert [e.model_dump() for e in small] == [
        e.model_dump() for e in load_edits(FIXTURES / "mquake.sample.json").edits
    ]
    path = tmp_path / "long.json"
    rec = json.dumps({"subject": "a", "prompt": "a is", "target_new": "b"})
    path.write_text("[" + rec + ", " + " " * (4 << 20) + "oops]")
    records = formats_io.iter_json(path)
    assert next(records).data["subject"] == "a"  # read without touching the bad tail
    with pytest.raises(SkeditError, match="expected ',' or ']'|invalid JSON"):
        next(records)


def test_conflicting_edits_are_reported_not_merged(capsys):
    code, obj = inspect_json(capsys, str(BROKEN / "conflicts.jsonl"))
    assert code == 2 and obj["edits"] == 3  # nothing dropped
    (p,) = obj["problems"]
    assert p["record"] == 3 and p["field"] == "target_new"
    assert "conflicts with" in p["message"] and "'Berlin' vs 'Munich'" in p["message"]


def test_conflicts_by_relation_in_mquake(tmp_path):
    cases = json.loads((FIXTURES / "mquake.sample.json").read_text())
    other = json.loads(json.dumps(cases[0]))
    other["case_id"] = 9
    rw = other["requested_rewrite"][0]
    rw["prompt"] = "{} holds the citizenship of"  # other words, same relation P27
    rw["target_new"]["str"] = "Japan"
    path = tmp_path / "mq.json"
    path.write_text(json.dumps([*cases, other]))
    res = load_edits(path)
    (p,) = res.problems
    assert p.record == 2 and "relation P27" in p.message and "'Croatia' vs 'Japan'" in p.message


def test_duplicate_ids_and_subject_missing(tmp_path, capsys):
    path = tmp_path / "dups.jsonl"
    line = {"id": "e1", "subject": "Leo Arons", "prompt": "Leo Arons died in", "target_new": "X"}
    path.write_text(json.dumps(line) + "\n" + json.dumps(line | {"target_new": "X"}) + "\n")
    code, obj = inspect_json(capsys, str(path))
    assert code == 2 and "duplicate id 'e1'" in obj["problems"][0]["message"]
    code, obj = inspect_json(capsys, str(BROKEN / "problems.csv"))
    fields = [(p["record"], p["field"]) for p in obj["problems"]]
    assert fields == [(3, "prompt"), (4, "target_new")]
    assert "does not occur in prompt" in obj["problems"][0]["message"]


def test_skedit_jsonl_schema_errors_name_the_field(tmp_path, capsys):
    path = tmp_path / "edits.jsonl"
    good = {"subject": "Leo Arons", "prompt": "Leo Arons died in", "target_new": "Berlin"}
    path.write_text(
        json.dumps(good)
        + "\n"
        + json.dumps(good | {"kind": "move"})
        + "\n"
        + json.dumps({"subject": "Leo Arons", "prompt": "Leo Arons died in"})
        + "\n"
    )
    code, obj = inspect_json(capsys, "--skip-invalid", str(path))
    assert code == 2 and obj["edits"] == 1 and obj["skipped"] == 2
    assert [(p["record"], p["field"]) for p in obj["problems"]] == [(2, "kind"), (3, "target_new")]


def test_wrong_format_flag(capsys):
    code, _, err = inspect(capsys, "--format", "zsre", str(FIXTURES / "counterfact.sample.json"))
    assert code == 2 and "look like counterfact" in err
    code, _, err = inspect(capsys, "--format", "mquake", str(FIXTURES / "edits.csv"))
    assert code == 2 and "not JSON" in err


@pytest.mark.parametrize(
    "name", ["counterfact.sample.json", "mquake.sample.json", "edits.jsonl", "edits.csv"]
)
def test_damaged_files_never_raise_anything_but_skedit_error(tmp_path, name):
    """Cut the file anywhere or flip random bytes: a result or a SkeditError, nothing else."""
    import random

    data = (FIXTURES / name).read_bytes()
    rng = random.Random(name)
    cases = [data[:i] for i in range(0, len(data), max(1, len(data) // 40))]
    for _ in range(40):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        cases.append(bytes(damaged))
    path = tmp_path / name
    for case in cases:
        path.write_bytes(case)
        for skip in (False, True):
            try:
                res = load_edits(path, skip_invalid=skip)
            except SkeditError as exc:
                assert exc.render()
            else:
                assert res.edits


@pytest.mark.slow
def test_100mb_valid_dataset_loads(tmp_path):
    """A real-sized file (100 MB of KnowEdit records) loads, streamed, with the right counts."""
    rec = json.loads((FIXTURES / "broken" / "conflicts.jsonl").read_text().splitlines()[0])
    path = tmp_path / "big.json"
    n = 0
    with open(path, "w") as fh:
        fh.write("[\n")
        while fh.tell() < 100 << 20:
            r = rec | {"subject": f"Leo Arons {n}", "prompt": f"Where did Leo Arons {n} die?"}
            r["locality"] = {"Relation_Specificity": [{"prompt": "x" * 400, "ground_truth": "y"}]}
            fh.write(("," if n else "") + json.dumps(r))
            n += 1
        fh.write("]")
    res = load_edits(path, progress=False)
    assert len(res.edits) == n and res.problems == []
    assert sum(len(e.locality) for e in res.edits) == n


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("deep.jsonl", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "nested too deeply"),
        ("long.json", '[{"subject": ' + "1" * 5000 + "}]", "unreadable JSON value"),
        (
            "long.jsonl",
            '{"subject": "a", "prompt": "a is", "target_new": "b"}\n'
            '{"subject": ' + "1" * 5000 + "}\n",
            "line 2: unreadable JSON value",
        ),
    ],
    ids=["deep-json", "deep-jsonl", "long-number-json", "long-number-jsonl"],
)
def test_pathological_json_is_a_clear_error(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    code, _, err = inspect(capsys, str(path))
    assert code == 2 and message in err


def test_lone_surrogates_are_refused_where_they_are(tmp_path, capsys):
    """JSON may escape half a UTF-16 pair; such text cannot be written back as UTF-8."""
    path = tmp_path / "sur.json"
    path.write_text(
        '[{"subject": "a", "prompt": "a is", "target_new": "b", "ground_truth": "x\\udc00"},'
        ' {"subject": "c", "prompt": "c is", "target_new": "d", "rephrase": "\\ud83d\\ude00"}]'
    )
    code, _, err = inspect(capsys, str(path))
    assert code == 2 and "record 0" in err and "not valid Unicode" in err
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", "--skip-invalid", str(path), str(out)]) == 0
    assert load_edits(out).edits[0].rephrases == ["😀"]  # a real pair is fine
