"""The ``skedit`` command. Each command family lives in ``skedit.pipelines.commands.<name>``
(or in a plugin: ``skedit.pipelines.plugins``) and exposes ``register(subparsers)``; this module
only wires them and handles errors."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from skedit.pipelines import plugins
from skedit.prompts.errors import SkeditError

# command modules, in the order they appear in --help
COMMANDS = [
    "data",
    "agents",
    "review",
    "sft",
    "eval",
    "trace",
    "run",
    "bench",
    "model",
    "recipe",
]


def _version() -> str:
    try:
        return version("skedit")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skedit",
        description="Supervised knowledge editing: agents write dense fact prompts, a teacher "
        "reads them, TRL distils its answers into the student's weights.",
    )
    parser.add_argument("--version", action="version", version=f"skedit {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for path in _command_modules():
        try:
            module = importlib.import_module(path)
        except ModuleNotFoundError as exc:
            if exc.name == path:
                continue  # command family not built yet
            raise
        module.register(sub)
    return parser


def _command_modules() -> list[str]:
    """The command modules in --help order: a plugin's command after the one it names."""
    order = [(name, f"skedit.pipelines.commands.{name}") for name in COMMANDS]
    for name, path, after in plugins.commands():
        names = [n for n, _ in order]
        order.insert(names.index(after) + 1 if after in names else len(order), (name, path))
    return [path for _, path in order]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SkeditError as exc:
        print(f"skedit: error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "\nskedit: interrupted. Finished steps are saved; run the same command to resume.",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:
        # the reader went away (``skedit data inspect FILE | head``): stop quietly, as cat does;
        # stdout goes to devnull so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
