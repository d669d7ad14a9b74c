"""``skedit bench [NAME]``: benchmarks.

``skedit bench NAME`` runs one benchmark (each prints a table and writes JSON): ``real`` on a real
model, the others from plugins (the synthetic world's ``agents``, ``sft``, ``eval``, ``rome``).
``skedit bench`` alone is a plugin's default one (the world's performance benchmark: wall time
and peak memory per stage).
"""

from __future__ import annotations

import argparse
import importlib

from skedit.pipelines import plugins


def real_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a model folder or a name (smollm2-135m, ...)")
    p.add_argument("--facts", required=True, help="a known-facts JSON file (ROME's layout)")
    p.add_argument("--edits", type=int, default=60, help="counterfactual edits in the batch")
    p.add_argument("--out", default="bench_real.json", help="JSON result file")
    p.add_argument("--work", help="folder for the edits and the run (default: next to --out)")
    p.add_argument("--recipe", help="recipe (default: the model's, else its family's)")
    p.add_argument(
        "--methods",
        default="skedit,base,prompt,ft-l,ft-m,lora,rome,memit,alphaedit",
        help="methods in the table (skedit = the whole `skedit run`)",
    )
    p.add_argument("--readme", help="splice the table into this file between its markers")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=0)


def benches() -> dict[str, tuple[str, str, str]]:
    """name → (module exposing run(args), help, "module:function" adding its options)."""
    return {
        **plugins.benches(),
        "real": (
            "skedit.pipelines.bench.real",
            "skedit and every baseline on a real model, on facts it knows (held out)",
            f"{__name__}:real_arguments",
        ),
        "backends": (
            "skedit.pipelines.bench.backends",
            "rules vs an LLM vs mixed writing the prompts and probes, end to end on a real model",
            "skedit.pipelines.bench.backends:add_arguments",
        ),
    }


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks: wall time and peak memory per stage (default), or `bench NAME`",
        description=__doc__,
    )
    default = plugins.default_bench()
    if default:
        add_arguments, run = default
        plugins.resolve(add_arguments)(p)
        p.set_defaults(func=plugins.resolve(run))
    names = p.add_subparsers(dest="bench", metavar="NAME")
    for name, (module, help_text, add_arguments) in benches().items():
        q = names.add_parser(name, help=help_text)
        plugins.resolve(add_arguments)(q)
        q.set_defaults(func=_component, bench_module=module)


def _component(args: argparse.Namespace) -> int:
    return importlib.import_module(args.bench_module).run(args)
