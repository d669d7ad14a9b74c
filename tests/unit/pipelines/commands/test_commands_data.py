"""``skedit data inspect`` and ``skedit data convert`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from skedit.pipelines.cli import main
from skedit.prompts.io import read_jsonl
from skedit.prompts.schema import Edit

FIXTURES = next(d for d in Path(__file__).resolve().parents if d.name == "tests") / "fixtures"
BROKEN = FIXTURES / "broken"
REAL_SAMPLES = (
    next(d for d in Path(__file__).resolve().parents if (d / "pyproject.toml").is_file()).parent
    / "shared"
    / "data"
    / "real-samples"
)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_json_object(capsys):
    code, out, _ = run(capsys, "data", "inspect", "--json", str(FIXTURES / "mquake.sample.json"))
    assert code == 0
    obj = json.loads(out)
    assert obj["format"] == "mquake" and obj["edits"] == 3 and obj["records"] == 2
    assert obj["probes"] == {"edit": 3, "rephrase": 3, "portability": 6, "locality": 1}
    assert obj["probe_subkinds"]["portability"] == {"multi_hop": 6}
    assert obj["problems"] == [] and obj["ok"] is True
    assert obj["rephrases"] == 3


def test_inspect_real_knowedit_human(capsys):
    path = REAL_SAMPLES / "knowedit_wiki_recent.sample.json"
    if not path.exists():
        pytest.skip("real samples not present")
    code, out, _ = run(capsys, "data", "inspect", str(path))
    assert code == 0
    assert "knowedit (JSON list, 1 record)" in out
    assert "Logical_Generalization 1, Reasoning 2, Subject_Aliasing 1" in out
    assert "locality" in out and "Relation_Specificity 2" in out
    assert "(clean)" in out


def test_inspect_lists_problems_and_exits_2(capsys):
    code, out, _ = run(capsys, "data", "inspect", str(BROKEN / "problems.csv"))
    assert code == 2
    assert "problems.csv: line 3: field 'prompt'" in out
    assert "problems.csv: line 4: field 'target_new': empty target" in out


def test_convert_refuses_problems_unless_asked(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "data", "convert", str(BROKEN / "conflicts.jsonl"), str(out))
    assert code == 2 and not out.exists()
    assert "nothing written" in err and "conflicts with" in err
    code, _, err = run(
        capsys, "data", "convert", "--allow-problems", str(BROKEN / "conflicts.jsonl"), str(out)
    )
    assert code == 0 and len(read_jsonl(out, Edit)) == 3  # both conflicting edits kept
    assert "written despite 1 problems" in err


def test_convert_skip_invalid_writes_the_rest(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "data", "convert", str(BROKEN / "wrong_types.json"), str(out))
    assert code == 2 and not out.exists() and "record 1" in err
    code, _, err = run(
        capsys, "data", "convert", "--skip-invalid", str(BROKEN / "wrong_types.json"), str(out)
    )
    assert code == 0
    assert [e.subject for e in read_jsonl(out, Edit)] == ["Epaspidoceras", "Frederic Piesch"]
    assert "skipped 1 invalid records" in err and "field 'target_new'" in err


def test_convert_does_not_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    code, _, err = run(capsys, "data", "convert", str(FIXTURES / "edits.csv"), str(out))
    assert code == 2 and "--force" in err and out.read_text() == "precious\n"
    code, _, _ = run(capsys, "data", "convert", "--force", str(FIXTURES / "edits.csv"), str(out))
    assert code == 0 and len(read_jsonl(out, Edit)) == 4


def test_console_entry_point_has_no_traceback(tmp_path):
    """The real process: bad input prints one clear line on stderr and exits 2."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "skedit.pipelines.cli",
            "data",
            "inspect",
            str(BROKEN / "truncated.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("skedit: error: ") and "truncated" in proc.stderr


def test_inspect_names_unknown_fields(tmp_path, capsys):
    path = tmp_path / "typo.json"
    rec = {"subject": "Leo Arons", "prompt": "Leo Arons died in", "target_new": "Berlin"}
    path.write_text(json.dumps([rec | {"rephrase_promt": "Where did Leo Arons die?", "cond": ""}]))
    code, out, _ = run(capsys, "data", "inspect", "--json", str(path))
    obj = json.loads(out)
    assert obj["unknown_fields"] == {"rephrase_promt": 1}  # a typo is shown, not lost
    assert obj["unused_fields"] == {"rephrase_promt": 1, "cond": 1}
    assert obj["rephrases"] == 0
    code, out, _ = run(capsys, "data", "inspect", str(path))
    assert "unknown fields: rephrase_promt (1 records)" in out


def test_inspect_piped_into_head_stops_without_a_traceback(tmp_path):
    # every record lacks its target: --json lists them all, far more than the pipe holds
    rows = "".join(f'{{"subject": "S{i}", "prompt": "S{i} lives in"}}\n' for i in range(3000))
    path = tmp_path / "many.jsonl"
    path.write_text(rows)
    res = subprocess.run(
        f"{sys.executable} -m skedit.pipelines.cli data inspect {path} --json | head -c 64",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert len(res.stdout) == 64
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
