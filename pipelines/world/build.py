"""The embedded default: a synthetic knowledge world and a small model that knows it.

``build_world`` generates the world from a seed, trains a word-level Llama on it, writes the
benchmark edit files and measures the model; everything lands in one folder of the user cache
named after a hash of the world's config. The folder is built under a temporary name and
renamed when complete, so an interrupted build never looks finished; a second call reuses it.

Layout of a world folder::

    world.json            the world (entities, facts, splits)
    model/                safetensors + tokenizer + world_config.json
    benchmark/dev.jsonl   skedit edits
    benchmark/test.jsonl
    heldout.txt           world text not about the benchmark's people
    report.json           the ``skedit world build --json`` object

Report (greedy exact match with ``skedit.prompts.answers.matches``): ``recall.train`` = world
facts asked in training phrasings; ``recall.heldout`` = facts of entities whose held-out
phrasings were never trained (all benchmark people among them) asked in those phrasings;
``two_hop`` = compositions asked closed-book about people whose two-hop questions were never
trained; ``in_context[k]`` = test edits in groups of k, their compact statements as the
context: ``edit`` (the edit prompt), ``paraphrase`` (held-out phrasings), ``portability`` (one
hop beyond the new fact, answer from the edited world), ``locality`` (the edit's locality
probes answer as they do without the context); ``in_context_tables[k]`` = the same with the
k facts laid out as the rules writer's relation tables (``birthplace: s1 t1 s2 t2.``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from skedit.prompts.errors import SkeditError
from skedit.prompts.io import atomic_write_json, atomic_write_text
from skedit.sft.hub import cache_root

WORLD_VERSION = 1  # bump when generated data or training changes meaning
SIZES = ("tiny", "small")
_EVAL_N = {"tiny": (60, 32), "small": (800, 400)}  # closed-book items, in-context edits
DEFAULT_SEED = 4242  # the world every stage uses by default; its small model ships with skedit
# What the default world's teacher has to read (the world issue's floors): closed-book recall
# in training and held-out phrasings, and one or four new facts in context (edit and locality).
FLOORS = {"recall.train": 0.98, "recall.heldout": 0.90, "edit": 0.95, "locality": 0.97}


def floors_missed(report: dict) -> list[str]:
    """The :data:`FLOORS` a small world's ``report`` misses, readable (empty: it meets all)."""
    misses = []
    for key in ("train", "heldout"):
        if report["recall"][key] < FLOORS[f"recall.{key}"]:
            misses.append(f"recall {key} {report['recall'][key]}")
    for k in ("1", "4"):
        for kind in ("edit", "locality"):
            value = report["in_context"][k][kind]
            if value < FLOORS[kind]:
                misses.append(f"in context k={k} {kind} {value}")
    return misses


@dataclass(frozen=True)
class WorldBuild:
    """A built world: where its model, benchmark files and report are."""

    model_dir: Path
    benchmark: dict[str, Path]
    world_dir: Path
    report: dict


def world_config(size: str, seed: int) -> dict:
    """Everything that determines a world and its model (hashed into the cache folder name)."""
    from dataclasses import asdict

    from skedit.pipelines.world.gen import SIZES as WORLD_SIZES
    from skedit.pipelines.world.train import TRAIN_SPECS

    return {
        "version": WORLD_VERSION,
        "size": size,
        "seed": seed,
        "world": asdict(WORLD_SIZES[size]),
        "train": asdict(TRAIN_SPECS[size]),
        "eval": list(_EVAL_N[size]),
    }


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def cached_world_dir(size: str, seed: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`build_world` keeps the world of ``size`` and ``seed`` (built or not)."""
    return (
        cache_root(cache_dir)
        / "worlds"
        / f"{size}-seed{seed}-{config_hash(world_config(size, seed))}"
    )


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise SkeditError(
            f"unknown world size '{size}'", field="size", hint=f"choose one of {', '.join(SIZES)}"
        )


def load_world_build(world_dir: str | os.PathLike) -> WorldBuild:
    """A finished world folder as a :class:`WorldBuild` (raises if it is not one)."""
    world_dir = Path(world_dir)
    report_path = world_dir / "report.json"
    if not report_path.is_file():
        raise SkeditError(
            "not a built world (no report.json)",
            file=str(world_dir),
            hint="build one with `skedit world build --out DIR`",
        )
    report = json.loads(report_path.read_text(encoding="utf-8"))
    # paths are recomputed from the folder, so a moved world still works
    report["world_dir"] = str(world_dir)
    report["model_dir"] = str(world_dir / "model")
    report["benchmark"] = {s: str(world_dir / "benchmark" / f"{s}.jsonl") for s in ("dev", "test")}
    return WorldBuild(
        model_dir=world_dir / "model",
        benchmark={s: Path(p) for s, p in report["benchmark"].items()},
        world_dir=world_dir,
        report=report,
    )


def default_threads() -> int | str:
    """``$SKEDIT_THREADS``, else ``"auto"``: 1 or 2 threads, whichever trains faster at the
    moment (2 were 1.6x faster on an idle 2-core machine, and 6-20x slower than 1 when another
    process kept a core busy)."""
    env = os.environ.get("SKEDIT_THREADS")
    return int(env) if env else "auto"


def build_world(
    size: str = "small",
    seed: int = DEFAULT_SEED,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    force: bool = False,
    *,
    out_dir: str | os.PathLike | None = None,
    threads: int | str | None = None,
    precision: str = "auto",
    rebuild: bool = False,
) -> WorldBuild:
    """Build (or reuse) the world of ``size`` and ``seed``; see the module doc for the layout.

    A world whose weights ship with the package (:mod:`skedit.pipelines.world.shipped`) is
    copied from them, hash-checked, instead of trained; ``rebuild`` trains it from its seed all
    the same (and overwrites a finished folder, as ``force`` does). ``out_dir`` puts the world
    in that folder instead of the cache. ``threads`` defaults to :func:`default_threads`.
    ``precision`` (``auto``, ``fp32``, ``bf16``): see
    :func:`skedit.pipelines.world.train.autocast_context`.
    """
    from skedit.pipelines.world.shipped import check_cached, materialise, shipped_dir

    _check_size(size)
    config = world_config(size, seed)
    force = force or rebuild
    world_dir = Path(out_dir) if out_dir is not None else cached_world_dir(size, seed, cache_dir)
    if (world_dir / "report.json").is_file() and not force:
        built = load_world_build(world_dir)
        check_cached(world_dir, built.report)
        return built
    if world_dir.exists() and not force and any(world_dir.iterdir()):
        raise SkeditError(
            "folder exists and is not a finished world",
            file=str(world_dir),
            hint="pass --force to overwrite it, or choose another --out",
        )
    threads = threads or default_threads()
    shipped = None if rebuild else shipped_dir(size, seed, config_hash(config))
    tmp = world_dir.parent / f".{world_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if shipped is not None:
            atomic_write_json(tmp / "report.json", materialise(shipped, tmp, progress=progress))
        else:
            _build_into(
                tmp, world_dir, config, threads=threads, progress=progress, precision=precision
            )
        if world_dir.exists():
            old = world_dir.parent / f".{world_dir.name}.old-{os.getpid()}"
            world_dir.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(world_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_world_build(world_dir)


def write_world_files(folder: Path, size: str, seed: int):
    """What a world folder holds besides its model, generated from the seed: ``world.json``,
    the benchmark edit files and the held-out text. Returns ``(world, {split: edits})``."""
    from skedit.pipelines.world.bench import benchmark_edits
    from skedit.pipelines.world.corpus import heldout_lines, write_lines
    from skedit.pipelines.world.gen import generate_world
    from skedit.prompts.io import write_jsonl

    world = generate_world(size, seed)
    atomic_write_text(folder / "world.json", json.dumps(world.to_json(), sort_keys=True) + "\n")
    edits = {split: benchmark_edits(world, split) for split in ("dev", "test")}
    for split, rows in edits.items():
        write_jsonl(folder / "benchmark" / f"{split}.jsonl", rows)
    write_lines(folder / "heldout.txt", heldout_lines(world))
    return world, edits


def _build_into(
    tmp: Path, final: Path, config: dict, *, threads: int | str, progress: bool, precision: str
) -> None:
    from skedit.pipelines.world.corpus import build_tokenizer
    from skedit.pipelines.world.measure import TABLE_K_VALUES, closed_book, in_context
    from skedit.pipelines.world.train import TRAIN_SPECS, save_model, train_world_model

    size, seed = config["size"], config["seed"]
    t0 = time.perf_counter()
    tmp.mkdir(parents=True)
    world, edits = write_world_files(tmp, size, seed)
    tok = build_tokenizer(world)
    spec = TRAIN_SPECS[size]
    t_train = time.perf_counter()
    model, log = train_world_model(
        world, tok, spec, seed=seed, threads=threads, progress=progress, precision=precision
    )
    train_seconds = time.perf_counter() - t_train
    save_model(model, tok, tmp / "model", config)
    n_closed, n_ctx = _EVAL_N[size]
    t_eval = time.perf_counter()
    closed = closed_book(model, tok, world, n=n_closed, seed=seed)
    ctx = in_context(model, tok, edits["test"], n_edits=n_ctx, seed=seed)
    tables = in_context(
        model,
        tok,
        edits["test"],
        k_values=TABLE_K_VALUES,
        n_edits=n_ctx,
        seed=seed,
        layout="tables",
    )
    report = {
        "model_dir": str(final / "model"),
        "world_dir": str(final),
        "build_seconds": round(time.perf_counter() - t0, 1),
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - t_eval, 1),
        "benchmark": {s: str(final / "benchmark" / f"{s}.jsonl") for s in edits},
        "edits": {s: len(rows) for s, rows in edits.items()},
        **closed,
        "in_context": ctx,
        "in_context_tables": tables,
        "size": size,
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tok),
        "threads": threads,
        "precision": log[-1].get("precision", "fp32") if log else "fp32",
        "compiled": bool(log and log[-1].get("compiled")),
        "steps_per_second": round(spec.steps / train_seconds, 2),
        "cpu": _cpu_name(),
        "config_hash": config_hash(config),
        "train_log": log,
    }
    atomic_write_json(tmp / "report.json", report)


def _cpu_name() -> str:
    """The CPU's model name (what a report's seconds were measured on), if the OS says it."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cpus)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cpus)"


def default_world(size: str = "small", *, progress: bool = True) -> WorldBuild:
    """The world every stage uses by default: copied from the shipped weights (or, for a size
    with none, built) once, then reused from the user cache."""
    return build_world(size=size, seed=DEFAULT_SEED, progress=progress)


def load_world(world_dir: str | os.PathLike):
    """The :class:`~skedit.pipelines.world.gen.World` of a built world folder (its world.json)."""
    from skedit.pipelines.world.gen import World

    path = Path(world_dir) / "world.json"
    if not path.is_file():
        raise SkeditError(
            "no world.json in this folder", file=str(world_dir), hint="is it a built world?"
        )
    return World.from_json(json.loads(path.read_text(encoding="utf-8")))


def retention_text(world_dir: str | os.PathLike) -> list[str]:
    """New facts for retention fine-tuning (``world_corpus.retention_lines``)."""
    from skedit.pipelines.world.corpus import retention_lines

    return retention_lines(load_world(world_dir))


def heldout_text(world_dir: str | os.PathLike) -> list[str]:
    """Plain world text not about the benchmark's people (perplexity; retention fine-tuning
    when the user names it with --heldout)."""
    path = Path(world_dir) / "heldout.txt"
    if not path.is_file():
        raise SkeditError(
            "no heldout.txt in this folder", file=str(world_dir), hint="is it a built world?"
        )
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def key_stats_text(world_dir: str | os.PathLike) -> list[str]:
    """The corpus behind ROME/MEMIT/AlphaEdit key statistics on a world model: the held-out
    text plus facts about the new people seen in training contexts (see
    :func:`skedit.pipelines.world.corpus.key_stats_lines`); needs the folder's world.json."""
    from skedit.pipelines.world.corpus import key_stats_lines

    return key_stats_lines(load_world(world_dir))
