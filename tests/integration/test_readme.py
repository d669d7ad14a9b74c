"""The README's commands are real: every `skedit …` line parses with the real CLI, and the
set-up line is the one CI runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from skedit.pipelines.cli import build_parser

ROOT = next(d for d in Path(__file__).resolve().parents if (d / "pyproject.toml").is_file())
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_commands() -> list[str]:
    blocks = re.findall(r"```(?:bash|console)\n(.*?)```", README, flags=re.S)
    lines: list[str] = []
    for block in blocks:
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.strip().removeprefix("$ ")
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("skedit "):
                    lines.append(part)
    return lines


def test_readme_shows_many_commands():
    assert len(readme_commands()) >= 20


@pytest.mark.parametrize("line", readme_commands())
def test_every_readme_command_parses(line):
    argv = shlex.split(line, comments=True)[1:]
    args = build_parser().parse_args(argv)  # SystemExit(2) on an unknown option or command
    assert getattr(args, "func", None) is not None, f"{line!r} names no runnable command"


def test_ci_runs_the_readme_test_line():
    test_line = next(
        line for line in README.splitlines() if line.startswith("pip install") and "pytest" in line
    )
    assert test_line in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
