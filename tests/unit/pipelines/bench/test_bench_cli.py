"""Every benchmark is a `skedit bench NAME` command; `skedit bench` alone is the perf bench.
The world's benchmarks come through its plugin; the general code does not import the world."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from skedit.pipelines import plugins
from skedit.pipelines.cli import build_parser
from skedit.pipelines.commands.bench import benches
from skedit.pipelines.world.commands.bench import SFT_VARIANTS

REQUIRED = {
    "real": ["--model", "smollm2-135m", "--facts", "known.json"],
    "backends": ["--facts", "known.json"],
}
PIPELINES = Path(__file__).resolve().parents[4] / "pipelines"


@pytest.mark.parametrize("name", ["agents", "sft", "eval", "rome", "real", "backends"])
def test_each_bench_parses_and_runs_its_module(name):
    args = build_parser().parse_args(["bench", name, "--out", "x.json", *REQUIRED.get(name, [])])
    assert args.bench_module == benches()[name][0] and args.out == "x.json"


def test_the_real_bench_needs_a_model_and_facts(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "real", "--out", "x.json"])
    assert "--model" in capsys.readouterr().err


def test_plain_bench_is_the_perf_bench():
    args = build_parser().parse_args(["bench", "--sizes", "10"])
    assert args.bench is None and args.sizes == "10"


def test_the_sft_bench_default_names_every_variant():
    from skedit.pipelines.world.benches.sft import VARIANTS

    assert SFT_VARIANTS.split(",") == list(VARIANTS)


def test_the_world_step_bench_default_times_every_variant():
    import argparse

    from skedit.pipelines.world.benches.step import VARIANTS
    from skedit.pipelines.world.commands.bench import step_arguments

    p = argparse.ArgumentParser()
    step_arguments(p)
    assert p.parse_args([]).variants.split(",") == list(VARIANTS)


def test_the_world_is_a_plugin_of_the_general_commands():
    assert [p.__name__ for p in plugins.plugins()] == ["skedit.pipelines.world.plugin"]
    assert {"world", "demo"} <= {n for n, _, _ in plugins.commands()}
    assert set(plugins.benches()) == {"agents", "sft", "eval", "rome", "world-step"}


def test_no_module_outside_world_imports_the_world():
    importers = []
    for path in PIPELINES.rglob("*.py"):
        if "world" in path.relative_to(PIPELINES).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.startswith("skedit.pipelines.world") for n in names):
                importers.append(str(path.relative_to(PIPELINES)))
    assert importers == []
