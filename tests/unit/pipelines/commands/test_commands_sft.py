"""``skedit sft DIR --recipe R``: what the recipe changes and what it keeps from the run."""

from __future__ import annotations

import argparse

import yaml

from skedit.pipelines.commands.sft import resolve_config


def _args(recipe) -> argparse.Namespace:
    none = dict.fromkeys(
        ("method", "learning_rate", "epochs", "max_steps", "layers", "modules", "kd_topk")
    )
    return argparse.Namespace(recipe=str(recipe), lora=False, **none)


def test_a_recipe_applies_on_top_of_the_run_and_says_what_it_keeps(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"training": {"learning_rate": 3e-4, "epochs": 1}}))
    run = {"training": {"preserve_weight": 50.0, "learning_rate": 1e-4, "seed": 0}}
    config = resolve_config(_args(recipe), run, tmp_path)
    assert config.learning_rate == 3e-4 and config.epochs == 1  # the recipe's
    assert config.preserve_weight == 50.0  # the run's: the recipe does not name it
    err = capsys.readouterr().err
    assert "preserve_weight: 50.0" in err and "config.yaml" in err
    assert "learning_rate" not in err and "seed" not in err  # set by the recipe / a default
    # a recipe that names every option the run changed says nothing
    recipe.write_text(yaml.safe_dump({"training": {"preserve_weight": 0.0, "learning_rate": 1e-4}}))
    assert resolve_config(_args(recipe), run, tmp_path).preserve_weight == 0.0
    assert "kept from" not in capsys.readouterr().err
