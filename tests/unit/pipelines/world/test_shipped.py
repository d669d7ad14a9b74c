"""The default world's weights ship with the package: verified, copied into the cache, used by
the demo without training; a damaged file is a clear error; ``--rebuild`` still trains."""

import fnmatch
import json
import tomllib
from pathlib import Path

import pytest

import skedit.pipelines.world.shipped as shipped
import skedit.pipelines.world.train as wt
from skedit.pipelines.cli import main
from skedit.pipelines.world.build import (
    DEFAULT_SEED,
    build_world,
    config_hash,
    default_world,
    world_config,
)
from skedit.prompts.errors import SkeditError

REPO = next(d for d in Path(__file__).resolve().parents if (d / "pyproject.toml").is_file())
SMALL = shipped.SHIPPED_ROOT / f"small-seed{DEFAULT_SEED}"


class TrainingCalled(Exception):
    pass


class StopDemo(Exception):
    pass


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise TrainingCalled

    monkeypatch.setattr(wt, "train_world_model", refuse)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_default_small_world_ships_for_todays_config_under_10_mb():
    manifest = shipped.read_manifest(SMALL)
    # a change of the world or its training must come with freshly built shipped weights
    assert manifest["config_hash"] == config_hash(world_config("small", DEFAULT_SEED))
    files = [p for p in SMALL.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 10 * 2**20
    # every shipped file is package data (a wheel without them would train for many minutes)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["skedit.pipelines.world"]
    world_pkg = REPO / "pipelines" / "world"
    for p in files:
        rel = p.relative_to(world_pkg).as_posix()
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), rel


def test_shipped_weights_match_their_hashes_and_load():
    from skedit.sft.modelops import load_model

    manifest = shipped.read_manifest(SMALL)
    model_files = {r: h for r, h in manifest["sha256"].items() if r.startswith("model/")}
    assert "model/model.safetensors" in model_files
    shipped.verify_files(SMALL, model_files, hint="")
    model, tok = load_model(SMALL / "model")
    report = json.loads((SMALL / "report.json").read_text(encoding="utf-8"))
    assert sum(p.numel() for p in model.parameters()) == report["parameters"]
    assert len(tok) == report["vocab_size"]
    assert report["precision"] in ("fp32", "bf16") and report["steps_per_second"] > 0


def test_default_world_is_the_shipped_one_without_training(tmp_path, monkeypatch, no_training):
    monkeypatch.setenv("SKEDIT_CACHE", str(tmp_path))
    built = default_world(progress=False)
    assert built.world_dir.parent == tmp_path / "worlds"
    assert built.report["source"] == "shipped"
    assert (built.model_dir / "model.safetensors").read_bytes() == (
        SMALL / "model" / "model.safetensors"
    ).read_bytes()
    assert all(p.is_file() for p in built.benchmark.values())
    assert default_world(progress=False).world_dir == built.world_dir  # reused, checked again


def test_a_damaged_cached_copy_is_a_clear_error(tmp_path, monkeypatch, no_training, capsys):
    monkeypatch.setenv("SKEDIT_CACHE", str(tmp_path))
    built = default_world(progress=False)
    _flip_a_byte(built.model_dir / "model.safetensors")
    with pytest.raises(SkeditError) as err:
        default_world(progress=False)
    assert str(built.model_dir / "model.safetensors") in str(err.value)
    assert "sha256" in str(err.value) and "delete" in err.value.hint
    # the CLI says so without a traceback and exits 2; --force copies it again
    assert main(["world", "build", "--json"]) == 2
    assert "model.safetensors" in capsys.readouterr().err
    assert main(["world", "build", "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "shipped"


@pytest.fixture
def shipped_tiny(tiny_world, tmp_path, monkeypatch):
    """The session's tiny world (seed 0) shipped from a temporary package folder."""
    root = tmp_path / "package"
    folder = shipped.write_shipped(tiny_world.world_dir, root)
    monkeypatch.setattr(shipped, "SHIPPED_ROOT", root)
    return folder


def test_shipped_world_is_copied_with_the_same_files(
    shipped_tiny, tiny_world, tmp_path, no_training
):
    built = build_world("tiny", 0, cache_dir=tmp_path / "cache", progress=False)
    assert built.report["source"] == "shipped"
    assert built.report["in_context"] == tiny_world.report["in_context"]
    for rel in shipped.read_manifest(shipped_tiny)["sha256"]:
        assert (built.world_dir / rel).read_bytes() == (tiny_world.world_dir / rel).read_bytes()


def test_a_damaged_shipped_file_names_the_file_and_what_to_do(shipped_tiny, tmp_path, no_training):
    _flip_a_byte(shipped_tiny / "model" / "model.safetensors")
    with pytest.raises(SkeditError) as err:
        build_world("tiny", 0, cache_dir=tmp_path / "cache", progress=False)
    assert str(shipped_tiny / "model" / "model.safetensors") in str(err.value)
    assert "reinstall" in err.value.hint and "--rebuild" in err.value.hint
    worlds = tmp_path / "cache" / "worlds"
    assert not worlds.exists() or not any(worlds.iterdir())  # nothing half-copied is left


def test_a_world_generator_that_changed_is_caught(shipped_tiny, tmp_path, no_training):
    manifest = shipped.read_manifest(shipped_tiny)
    manifest["sha256"]["world.json"] = "0" * 64
    (shipped_tiny / shipped.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SkeditError, match="sha256 mismatch") as err:
        build_world("tiny", 0, cache_dir=tmp_path / "cache", progress=False)
    assert "world.json" in str(err.value) and "different world" in err.value.hint


def test_weights_of_another_config_are_not_used(shipped_tiny):
    assert shipped.shipped_dir("tiny", 0, config_hash(world_config("tiny", 0))) == shipped_tiny
    assert shipped.shipped_dir("tiny", 0, "0123456789") is None
    assert shipped.shipped_dir("tiny", 1, config_hash(world_config("tiny", 1))) is None


def test_rebuild_trains_from_the_seed(shipped_tiny, tmp_path, no_training):
    with pytest.raises(TrainingCalled):
        build_world("tiny", 0, cache_dir=tmp_path / "cache", progress=False, rebuild=True)
    with pytest.raises(TrainingCalled):
        main(
            [
                "world",
                "build",
                "--size",
                "tiny",
                "--seed",
                "0",
                "--rebuild",
                "--out",
                str(tmp_path / "w"),
            ]
        )


def test_demo_starts_from_the_shipped_world(tmp_path, monkeypatch, no_training):
    import skedit.pipelines.world.demo as demo

    seen = {}

    def stop(run_dir, *, config, **kwargs):
        seen["model"] = config.model
        raise StopDemo  # the rest of the demo is tested end to end elsewhere

    monkeypatch.setenv("SKEDIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "run_pipeline", stop)
    with pytest.raises(StopDemo):
        demo.run_demo(run_dir=tmp_path / "runs" / "demo", progress=False)
    model_dir = Path(seen["model"])
    assert model_dir.parent.parent == tmp_path / "cache" / "worlds"
    assert json.loads((model_dir.parent / "report.json").read_text())["source"] == "shipped"
