"""Second-moment statistics of MLP keys, ``C = E[k kᵀ]``, per layer, cached on disk.

ROME, MEMIT and AlphaEdit need to know which directions of key space ordinary text uses, so
that an edit changes the output for the edited subject's key and as little as possible for
everything else. ``k`` is the input of the MLP output projection at one token of a text
corpus. The statistics are computed once per (model, layer, corpus, sample count) and stored
as ``<cache>/stats/<hash>.safetensors`` with a ``<hash>.json`` provenance record next to it;
a different corpus gives a different hash, so changed text is never served stale numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from skedit.prompts.errors import SkeditError
from skedit.prompts.io import atomic_temp, atomic_write_json
from skedit.sft import arch
from skedit.sft.hub import cache_root
from skedit.sft.modelops import input_moments


@dataclass(frozen=True)
class Corpus:
    """Plain texts and where they came from (the provenance written next to the stats)."""

    name: str
    texts: tuple[str, ...]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for t in self.texts:
            h.update(t.encode("utf-8"))
            h.update(b"\0")
        return h.hexdigest()


def _read_text_file(path: Path) -> list[str]:
    if path.suffix == ".jsonl":
        texts = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                texts.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise SkeditError(
                    "a JSONL corpus needs one object with a 'text' field per line",
                    file=str(path),
                    record=n,
                    field="text",
                ) from exc
        return texts
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_dataset(spec: str) -> list[str]:
    # "dataset:NAME[:SPLIT[:COLUMN]]"; a local folder written by save_to_disk works too
    parts = spec.removeprefix("dataset:").split(":") + ["", ""]
    name, split, column = parts[0], parts[1] or "train", parts[2] or "text"
    import datasets

    try:
        if Path(name).is_dir() and (Path(name) / "dataset_info.json").exists():
            ds = datasets.load_from_disk(name)
            ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        else:
            ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # datasets raises many types; the user needs one message
        raise SkeditError(
            f"cannot load dataset {name!r} (split {split!r}): {exc}",
            hint="name a local dataset folder or one in the datasets cache "
            "(nothing is downloaded here), e.g. dataset:/data/wiki:train:text",
        ) from exc
    if column not in ds.column_names:
        raise SkeditError(
            f"dataset {name!r} has no column {column!r} (columns: {ds.column_names})",
            field=column,
            hint="give the text column as dataset:NAME:SPLIT:COLUMN",
        )
    return [str(t) for t in ds[column] if str(t).strip()]


def load_corpus(spec: Corpus | str | os.PathLike | Sequence[str], *, name: str = "texts") -> Corpus:
    """A corpus from a text file (one text per line; ``.jsonl`` with a ``text`` field), a
    ``dataset:NAME[:SPLIT[:COLUMN]]`` spec, or a list of texts already in memory."""
    if isinstance(spec, Corpus):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        s = str(spec)
        if s.startswith("dataset:"):
            return Corpus(s, tuple(_read_dataset(s)))
        path = Path(s)
        if not path.is_file():
            raise SkeditError(
                "corpus file not found",
                file=s,
                hint="give a text file, a JSONL file with 'text', or dataset:NAME",
            )
        return Corpus(f"file:{path.resolve()}", tuple(_read_text_file(path)))
    texts = tuple(str(t) for t in spec)
    return Corpus(name, texts)


def model_fingerprint(model) -> str:
    """Identity of a model's weights for the cache key: its path, config, and a sample of its
    token embedding (cheap even for large models; an edit leaves embeddings unchanged)."""
    cfg = model.config.to_dict()
    cfg.pop("_name_or_path", None)
    emb = arch.embedding(model).weight.detach().flatten()
    sample = emb[:: max(1, emb.numel() // 65536)].float().cpu().numpy().tobytes()
    h = hashlib.sha256()
    h.update(str(getattr(model.config, "_name_or_path", "")).encode())
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    h.update(sample)
    return h.hexdigest()[:16]


def stats_key(model, layer: int, corpus: Corpus, samples: int, max_length: int) -> str:
    blob = json.dumps(
        [
            model_fingerprint(model),
            layer,
            arch.mlp_out_name(model, layer),
            corpus.digest,
            samples,
            max_length,
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _save(path: Path, tensor: torch.Tensor, provenance: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = atomic_temp(path)
    os.close(fd)
    try:
        save_file({"mom2": tensor.contiguous()}, tmp, metadata={"layer": str(provenance["layer"])})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_json(path.with_suffix(".json"), provenance)


def _accumulate(model, tokenizer, layers, texts, max_length, batch_size, progress):
    """``E[k kᵀ]`` per layer and the token count over ``texts`` (one forward pass per batch)."""
    rows = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    modules = {layer: arch.mlp_out(model, layer) for layer in layers}
    return input_moments(
        model,
        modules,
        rows,
        pad_id=pad,
        batch_size=batch_size,
        progress=progress,
        desc="key statistics",
    )


def key_second_moments(
    model,
    tokenizer,
    layers: Sequence[int],
    corpus: Corpus | str | os.PathLike | Sequence[str],
    *,
    samples: int = 2000,
    max_length: int = 128,
    batch_size: int = 16,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    force: bool = False,
) -> dict[int, torch.Tensor]:
    """``E[k kᵀ]`` (float32, ``(m, m)``) for each layer, from the first ``samples`` texts of
    ``corpus``; read from the cache when the same model, layer, corpus and count were seen."""
    corpus = load_corpus(corpus)
    if not corpus.texts:
        raise SkeditError(f"corpus {corpus.name!r} has no text", hint="give a non-empty corpus")
    layers = arch.check_layers(model, list(layers))
    root = cache_root(cache_dir)
    out: dict[int, torch.Tensor] = {}
    todo = []
    paths = {}
    for layer in layers:
        paths[layer] = (
            root / "stats" / f"{stats_key(model, layer, corpus, samples, max_length)}.safetensors"
        )
        if paths[layer].exists() and not force:
            from safetensors.torch import load_file

            out[layer] = load_file(paths[layer])["mom2"]
        else:
            todo.append(layer)
    if todo:
        texts = list(corpus.texts[:samples])
        t0 = time.time()
        moments, count = _accumulate(
            model, tokenizer, todo, texts, max_length, batch_size, progress
        )
        if count == 0:
            raise SkeditError(f"corpus {corpus.name!r} gave no tokens", hint="check its text")
        for layer in todo:
            mom2 = moments[layer].cpu()
            out[layer] = mom2
            _save(
                paths[layer],
                mom2,
                {
                    "model": str(getattr(model.config, "_name_or_path", "")),
                    "model_fingerprint": model_fingerprint(model),
                    "layer": layer,
                    "module": arch.mlp_out_name(model, layer),
                    "corpus": corpus.name,
                    "corpus_sha256": corpus.digest,
                    "texts": len(texts),
                    "samples": samples,
                    "tokens": count,
                    "max_length": max_length,
                    "seconds": round(time.time() - t0, 2),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            )
    return {layer: out[layer] for layer in layers}
