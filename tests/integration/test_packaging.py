"""``pip install .`` and ``pip install -e .`` both give ``skedit.*``, the ``skedit`` command, and
no top-level ``agents`` / ``sft`` modules.

Fast and offline: each install goes into a fresh venv (no pip of its own: the running pip
installs into it with ``--python``) with ``--no-deps --no-build-isolation``; the dependencies
come from the running interpreter's site-packages, added as a plain path (its ``.pth`` hooks,
such as the developer's own editable skedit, are not run; pip sees that install but never
uninstalls outside the target environment). Only when no setuptools >= 70.1 is
at hand does pip build in an isolated environment (fetching setuptools from PyPI).
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = next(d for d in Path(__file__).resolve().parents if (d / "pyproject.toml").is_file())
PROBE = """
import importlib, importlib.util, json, sys
out = {}
for name in ["skedit.agents", "skedit.sft", "skedit.prompts", "skedit.pipelines",
             "skedit.pipelines.commands", "skedit.pipelines.cli", "skedit.prompts.schema"]:
    out[name] = importlib.import_module(name).__file__ or ""
for bare in ["agents", "sft", "prompts", "pipelines"]:
    spec = importlib.util.find_spec(bare)
    out[bare] = None if spec is None else str(spec.origin or list(spec.submodule_search_locations))
print(json.dumps(out))
"""


def _setuptools_home(python: str) -> tuple[tuple[int, ...], str] | None:
    """(version, folder holding it) of the setuptools ``python`` imports, if any."""
    code = (
        "import os, setuptools; "
        "print(setuptools.__version__); print(os.path.dirname(os.path.dirname(setuptools.__file__)))"
    )
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    version, home = proc.stdout.split()
    return tuple(int(x) for x in version.split(".")[:2] if x.isdigit()), home


def _venv(root: Path) -> tuple[Path, bool]:
    """A fresh venv seeing the running interpreter's packages; and whether it can build offline
    (a setuptools >= 70.1 has ``bdist_wheel`` built in; older ones need ``wheel``)."""
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(root)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    base = getattr(sys, "_base_executable", sys.executable)
    found = [h for h in (_setuptools_home(base), _setuptools_home(sys.executable)) if h]
    best = max(found, default=None)
    lines = [best[1]] if best else []  # the newest setuptools first: .pth lines keep order
    lines.append(sysconfig.get_paths()["purelib"])  # torch, pydantic, ... (no .pth hooks run)
    Path(purelib, "_skedit_test_deps.pth").write_text("\n".join(lines) + "\n")
    return python, best is not None and best[0] >= (70, 1)


def _install(python: Path, offline: bool, *args: str) -> None:
    # without a modern setuptools here, let pip fetch one (PyPI) into an isolated build env
    isolation = ["--no-build-isolation"] if offline else []
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
        + ["--no-deps", "--no-input", *isolation, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("editable", [False, True], ids=["install", "editable"])
def test_install_gives_skedit_namespace_only(tmp_path, editable):
    env_dir = tmp_path / "venv"
    python, offline = _venv(env_dir)
    _install(python, offline, *(["-e", "."] if editable else ["."]))
    elsewhere = tmp_path / "elsewhere"  # an empty folder outside the repo
    elsewhere.mkdir()
    proc = subprocess.run(
        [str(python), "-c", PROBE], capture_output=True, text=True, cwd=elsewhere, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    for bare in ["agents", "sft", "prompts", "pipelines"]:
        assert found[bare] is None, f"`import {bare}` works after install: {found[bare]}"
    home = REPO if editable else env_dir
    for name in ["skedit.agents", "skedit.pipelines.cli", "skedit.prompts.schema"]:
        assert Path(found[name]).resolve().is_relative_to(home.resolve()), (name, found[name])
    for bare in ["agents", "sft"]:
        fail = subprocess.run(
            [str(python), "-c", f"import {bare}"], capture_output=True, text=True, cwd=elsewhere
        )
        assert fail.returncode != 0 and "ModuleNotFoundError" in fail.stderr
    script = env_dir / "bin" / "skedit"
    version = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, cwd=elsewhere, timeout=120
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip().startswith("skedit ") and "unknown" not in version.stdout
