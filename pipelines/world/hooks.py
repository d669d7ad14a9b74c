"""What the synthetic world adds to the evaluation harness (an ``EvalHook``).

A run's base model is a world model when its config names the world (``world_dir`` or
``world: {dir}``) or when the model sits in a built world folder (``DIR/model`` beside
``DIR/world.json`` and ``DIR/heldout.txt``). ``skedit eval`` and ``skedit run`` pass
:func:`eval_hook_for` to the harness, which never imports the world itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from skedit.pipelines.eval.hooks import EvalHook

ANSWER_TOKENS = 2  # a world line ends "answer ." (word-level tokenizer)


def world_dir_for(base_path: str, config: dict) -> str | None:
    """The synthetic world the run's base model comes from, if it does."""
    if config.get("world_dir"):
        return str(config["world_dir"])
    world = config.get("world")
    if isinstance(world, dict) and (world.get("world_dir") or world.get("dir")):
        return world.get("world_dir") or world.get("dir")
    parent = Path(base_path).parent  # a built world keeps its model in world_dir/model
    if (parent / "world.json").is_file() and (parent / "heldout.txt").is_file():
        return str(parent)
    return None


def world_capability(
    model, tokenizer, world_dir: str | os.PathLike, *, n: int = 200, seed: int = 0
) -> dict:
    """Closed-book recall and two-hop accuracy on the world's people that no edit touches."""
    from skedit.pipelines.world.gen import World
    from skedit.pipelines.world.measure import closed_book

    world = World.from_json(json.loads((Path(world_dir) / "world.json").read_text("utf-8")))
    edited = {p for ps in world.bench_people.values() for p in ps}
    untouched = dataclasses.replace(
        world,
        facts={s: r for s, r in world.facts.items() if s not in edited},
        names={**world.names, "person": [p for p in world.names["person"] if p not in edited]},
    )
    res = closed_book(model, tokenizer, untouched, n=n, seed=seed)
    return {
        "world_recall": {"mean": res["recall"]["train"], "n": n, "ci": None},
        "world_two_hop": {"mean": res["two_hop"], "n": n, "ci": None},
    }


def key_stats_file(world_dir: str | os.PathLike) -> str:
    """``DIR/key_stats.txt``, written once from the world: the corpus behind the locate-then-
    edit baselines' key statistics on a world model (``build.key_stats_text``)."""
    from skedit.pipelines.world.build import key_stats_text
    from skedit.prompts.io import atomic_write_text

    path = Path(world_dir) / "key_stats.txt"
    if not path.is_file():
        atomic_write_text(path, "\n".join(key_stats_text(world_dir)) + "\n")
    return str(path)


def eval_hook(world_dir: str) -> EvalHook:
    """The world's held-out and retention texts, answer-token perplexity and recall."""
    from skedit.pipelines.world.build import heldout_text, retention_text

    return EvalHook(
        name=f"synthetic world ({world_dir})",
        answer_tokens=ANSWER_TOKENS,
        heldout=lambda: list(heldout_text(Path(world_dir))),
        heldout_source=f"world held-out text ({world_dir})",
        retention=lambda: retention_text(world_dir),
        retention_source=f"new facts about the world's context-only people ({world_dir})",
        capability=lambda model, tok, seed=0: world_capability(model, tok, world_dir, seed=seed),
        key_stats=lambda: key_stats_file(world_dir),
    )


def eval_hook_for(base_path: str, config: dict) -> EvalHook | None:
    """The world's hook when the run's base model is a world model, else None."""
    world_dir = world_dir_for(base_path, config)
    return eval_hook(world_dir) if world_dir else None
