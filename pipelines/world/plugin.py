"""The synthetic world as a plugin of the general commands (entry point ``skedit.plugins:
world`` in pyproject.toml; see ``skedit.pipelines.plugins``): the default model, its eval hook,
``skedit world``, ``skedit demo`` and the benchmarks on the world. Imports nothing heavy:
``skedit --help`` reads it."""

from __future__ import annotations

_COMMANDS = "skedit.pipelines.world.commands"
_BENCHES = "skedit.pipelines.world.benches"

# (name, module exposing register(subparsers), the command it follows in --help)
COMMANDS = [
    ("world", f"{_COMMANDS}.world", "data"),
    ("demo", f"{_COMMANDS}.demo", "run"),
]

# name → (module exposing run(args), help, "module:function" adding its options)
BENCHES = {
    "agents": (
        f"{_BENCHES}.agents",
        "the agents: density and teacher accuracy of their prompts",
        f"{_COMMANDS}.bench:agents_arguments",
    ),
    "sft": (
        f"{_BENCHES}.sft",
        "teacher + training variants (sft, kd, ...) on world edits",
        f"{_COMMANDS}.bench:sft_arguments",
    ),
    "eval": (
        f"{_BENCHES}.eval",
        "skedit against every baseline on the same world edits, in one run",
        f"{_COMMANDS}.bench:eval_arguments",
    ),
    "rome": (
        f"{_BENCHES}.rome",
        "ROME, MEMIT and AlphaEdit on world edits, with a sequential curve",
        f"{_COMMANDS}.bench:rome_arguments",
    ),
    "world-step": (
        f"{_BENCHES}.step",
        "the world model's training step: plain, fused AdamW, torch.compile (steps/s)",
        f"{_COMMANDS}.bench:step_arguments",
    ),
}

# plain `skedit bench`: wall time and peak memory per stage on the world
DEFAULT_BENCH = (f"{_COMMANDS}.bench:perf_arguments", f"{_COMMANDS}.bench:perf")


def default_model() -> str:
    """The small world's model (the shipped one, copied into the cache on first use)."""
    from skedit.pipelines.world.build import default_world

    return str(default_world().model_dir)


def eval_hook_for(base_path: str, config: dict):
    """The world's held-out text, answer-token perplexity and recall, for a world model."""
    from skedit.pipelines.world.hooks import eval_hook_for as world_hook_for

    return world_hook_for(base_path, config)
