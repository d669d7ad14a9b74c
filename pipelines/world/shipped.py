"""The default world's model, shipped with the package so that a first run need not train it.

``shipped/<size>-seed<seed>/`` holds what training produced, built once by ``skedit world build``:
``model/`` (safetensors, tokenizer, configs), ``report.json`` (its measured report) and
``manifest.json`` (the world config hash it was built from and the sha256 of every file of the
finished world folder). The rest of a world folder (``world.json``, the benchmark files, the
held-out text) is regenerated from the seed in seconds and checked against the manifest as well,
so a world generator that changed since the weights were trained is caught, not paired with the
wrong model. Weights whose config hash differs from today's :func:`world_config` are not used
(the world is trained from its seed instead).

Refresh after a change of the world or its training (a folder ``skedit world build`` wrote)::

    python -m skedit.pipelines.world.shipped WORLD_DIR
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from skedit.prompts.errors import SkeditError
from skedit.sft.hub import sha256_file

SHIPPED_ROOT = Path(__file__).with_name("shipped")
MANIFEST = "manifest.json"
GENERATED = ("world.json", "benchmark/dev.jsonl", "benchmark/test.jsonl", "heldout.txt")


def shipped_dir(size: str, seed: int, config_hash: str, root: Path | None = None) -> Path | None:
    """The shipped folder of this world if its weights were trained from this exact config."""
    folder = (root or SHIPPED_ROOT) / f"{size}-seed{seed}"
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None
    if json.loads(manifest.read_text(encoding="utf-8")).get("config_hash") != config_hash:
        return None
    return folder


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def verify_files(world_dir: Path, sha256: dict[str, str], *, hint: str) -> None:
    """Raise naming the first file of ``sha256`` (paths relative to ``world_dir``) whose bytes
    differ from the recorded hash."""
    for rel, want in sorted(sha256.items()):
        path = world_dir / rel
        if not path.is_file():
            raise SkeditError("a file of the world is missing", file=str(path), hint=hint)
        if sha256_file(path) != want:
            raise SkeditError(
                f"sha256 mismatch: the file's bytes differ from the recorded hash {want[:12]}…",
                file=str(path),
                hint=hint,
            )


def materialise(src: Path, tmp: Path, *, progress: bool = True) -> dict:
    """Write a complete world folder into ``tmp`` from the shipped folder ``src``: model files
    copied, the rest regenerated from the seed, every file checked against the manifest.
    Returns the report to write (the shipped one, marked ``"source": "shipped"``)."""
    from skedit.pipelines.world.build import write_world_files

    manifest = read_manifest(src)
    sha = manifest["sha256"]
    model_files = {rel: h for rel, h in sha.items() if rel.startswith("model/")}
    verify_files(
        src,
        model_files,
        hint="the installed skedit package is damaged: reinstall it (pip install "
        "--force-reinstall skedit), or train the world from its seed with "
        "`skedit world build --rebuild`",
    )
    if progress:
        print(
            f"world model: using the shipped {manifest['size']} world (seed {manifest['seed']}), "
            "sha256 verified",
            file=sys.stderr,
        )
    tmp.mkdir(parents=True)
    (tmp / "model").mkdir()
    for rel in model_files:
        shutil.copyfile(src / rel, tmp / rel)
    write_world_files(tmp, manifest["size"], manifest["seed"])
    verify_files(
        tmp,
        {rel: sha[rel] for rel in GENERATED},
        hint="this skedit generates a different world from the seed than the one its shipped "
        "model was trained on: train it with `skedit world build --rebuild` (and refresh the "
        "shipped weights, see skedit.pipelines.world.shipped)",
    )
    report = json.loads((src / "report.json").read_text(encoding="utf-8"))
    report["source"] = "shipped"
    report["sha256"] = model_files  # checked again each time the cached copy is loaded
    return report


def check_cached(world_dir: Path, report: dict) -> None:
    """A cached world made from shipped weights: its model files still match their hashes."""
    if report.get("source") != "shipped" or "sha256" not in report:
        return
    verify_files(
        world_dir,
        report["sha256"],
        hint=f"the cached copy of the shipped world is damaged: delete {world_dir} (it is "
        "copied again from the package on the next run) or run `skedit world build --force`",
    )


def write_shipped(world_dir: Path, root: Path | None = None) -> Path:
    """Copy a built world's model and report into ``root`` (default: the package's
    ``shipped/``) with a manifest of the whole folder's hashes; returns the new folder."""
    world_dir = Path(world_dir)
    report = json.loads((world_dir / "report.json").read_text(encoding="utf-8"))
    config = json.loads((world_dir / "model" / "world_config.json").read_text(encoding="utf-8"))
    dest = (root or SHIPPED_ROOT) / f"{report['size']}-seed{report['seed']}"
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "model").mkdir(parents=True)
    model_files = sorted(p.name for p in (world_dir / "model").iterdir() if p.is_file())
    for name in model_files:
        shutil.copyfile(world_dir / "model" / name, dest / "model" / name)
    for key in ("model_dir", "world_dir", "benchmark"):  # paths of the machine that built it
        report.pop(key, None)
    (dest / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    rels = [f"model/{n}" for n in model_files] + list(GENERATED)
    manifest = {
        "size": report["size"],
        "seed": report["seed"],
        "config_hash": report["config_hash"],
        "world_version": config["version"],
        "sha256": {rel: sha256_file(world_dir / rel) for rel in rels},
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m skedit.pipelines.world.shipped WORLD_DIR")
    print(write_shipped(Path(sys.argv[1])))
