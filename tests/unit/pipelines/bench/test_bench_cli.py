"""Every benchmark is a `skedit bench NAME` command; `skedit bench` alone is the perf bench."""

from __future__ import annotations

import pytest

from skedit.pipelines.cli import build_parser
from skedit.pipelines.commands.bench import BENCHES, SFT_VARIANTS


REQUIRED = {"real": ["--model", "smollm2-135m", "--facts", "known.json"]}


@pytest.mark.parametrize("name", sorted(BENCHES))
def test_each_bench_parses_and_runs_its_module(name):
    args = build_parser().parse_args(["bench", name, "--out", "x.json", *REQUIRED.get(name, [])])
    assert args.bench_module == BENCHES[name][0] and args.out == "x.json"


def test_the_real_bench_needs_a_model_and_facts(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "real", "--out", "x.json"])
    assert "--model" in capsys.readouterr().err


def test_plain_bench_is_the_perf_bench():
    args = build_parser().parse_args(["bench", "--sizes", "10"])
    assert args.bench is None and args.sizes == "10"


def test_the_sft_bench_default_names_every_variant():
    from skedit.pipelines.bench.sft import VARIANTS

    assert SFT_VARIANTS.split(",") == list(VARIANTS)
