"""Recipes: YAML files of settings, shipped in ``skedit.pipelines/recipes`` or given by path.

The one lookup every command uses: a path to a ``.yaml`` file, or the name of a shipped recipe
(``world-cpu``; the per-family defaults ``world``, ``llama``, ``gemma3``, ``gpt2``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from skedit.prompts.errors import SkeditError


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped with skedit."""
    folder = resources.files("skedit.pipelines") / "recipes"
    return sorted(
        f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml")
    )


def recipe_path(name: str | Path, *, field: str = "--recipe") -> Path:
    """A recipe file, or the name of one shipped with skedit."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise SkeditError("recipe file not found", file=str(path), field=field)
        return path
    shipped = resources.files("skedit.pipelines") / "recipes" / f"{name}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    raise SkeditError(
        f"recipe not found: {name}",
        field=field,
        hint=f"give a YAML file or one of: {', '.join(shipped_recipes())}",
    )


def load_recipe(name: str | Path, *, field: str = "--recipe") -> dict:
    """A recipe as a mapping (empty for an empty file)."""
    path = recipe_path(name, field=field)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SkeditError(f"recipe is not valid YAML: {exc}", file=str(path)) from exc
    if not isinstance(data, dict):
        raise SkeditError("a recipe must be a mapping of sections", file=str(path))
    return data
