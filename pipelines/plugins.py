"""Plugins: what a source of models adds to the general commands, looked up by name.

A plugin is a module named by an entry point of the group ``skedit.plugins`` (the synthetic
world declares its ``world/plugin.py`` in pyproject.toml). The general code knows only what a
plugin may provide, each optional:

- ``default_model() -> str``: the base model of a command given no ``--model`` (the first
  plugin that has one wins);
- ``eval_hook_for(base_path, config) -> EvalHook | None``: what the plugin adds to the
  evaluation of a model it knows (see ``skedit.pipelines.eval.hooks``);
- ``COMMANDS``: ``[(name, module, after)]``: command modules exposing ``register(subparsers)``,
  listed in ``skedit --help`` after the command ``after``;
- ``BENCHES``: ``{name: (module, help, add_arguments)}``: ``skedit bench NAME`` runs
  ``module.run(args)``; ``add_arguments`` (``"module:function"``) adds its options;
- ``DEFAULT_BENCH``: ``(add_arguments, run)`` (``"module:function"`` each): plain
  ``skedit bench``.

A plugin module must import quickly (``skedit --help`` reads it): heavy imports go inside its
functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from types import ModuleType

from skedit.prompts.errors import SkeditError

GROUP = "skedit.plugins"


@cache
def plugins() -> tuple[ModuleType, ...]:
    """Every installed plugin module, in the order of their entry-point names."""
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    return tuple(ep.load() for ep in found)


def resolve(ref: str) -> Callable:
    """``"package.module:function"`` → the function."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def default_model() -> str:
    """The base model when none is given: the first plugin's that provides one."""
    for plugin in plugins():
        if hasattr(plugin, "default_model"):
            return plugin.default_model()
    raise SkeditError(
        "no model given and no installed plugin provides a default one",
        hint="pass --model PATH (or a `model:` in the recipe)",
    )


def eval_hook_for(base_path: str, config: dict):
    """The first plugin's eval hook for this base model, or None (the harness's ``hook_for``)."""
    for plugin in plugins():
        factory = getattr(plugin, "eval_hook_for", None)
        hook = factory(base_path, config) if factory else None
        if hook is not None:
            return hook
    return None


def commands() -> list[tuple[str, str, str | None]]:
    """``(name, module, after)`` of every plugin's commands."""
    return [c for plugin in plugins() for c in getattr(plugin, "COMMANDS", ())]


def benches() -> dict[str, tuple[str, str, str]]:
    """``{name: (module, help, add_arguments)}`` of every plugin's benchmarks."""
    out: dict[str, tuple[str, str, str]] = {}
    for plugin in plugins():
        out.update(getattr(plugin, "BENCHES", {}))
    return out


def default_bench() -> tuple[str, str] | None:
    """``(add_arguments, run)`` of plain ``skedit bench``: the first plugin's, if any."""
    for plugin in plugins():
        if getattr(plugin, "DEFAULT_BENCH", None):
            return plugin.DEFAULT_BENCH
    return None
