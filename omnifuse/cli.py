"""The ``omnifuse`` command.

Sub-commands map one-to-one onto package functions so that everything the workflow does can also be
run (and debugged) by hand; ``omnifuse --help`` lists them, e.g.::

    omnifuse synth mimic --out resources/synthetic/mimic --n-stays 2000 --seed 0
    omnifuse synth lung  --out resources/synthetic/lung --n-patients 1000 --seed 0
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import omnifuse

log = logging.getLogger("omnifuse")


def field_comments(cls: type) -> dict[str, str]:
    """Help text of each dataclass field: its trailing ``# comment``, else the comment block above it
    (a block applies to every field that follows it, up to the next block or blank line)."""
    comments: dict[str, str] = {}
    block: list[str] = []
    in_block = False
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block = [*block, stripped.lstrip("# ")] if in_block else [stripped.lstrip("# ")]
            in_block = True
            continue
        in_block = False
        match = re.match(r"(\w+)\s*:[^=]+=[^#]*(?:#\s*(.*))?$", stripped)
        if match:
            comments[match.group(1)] = match.group(2) or " ".join(block)
        elif not stripped:
            block = []
    return comments


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = ()) -> None:
    """One ``--flag`` per field of the options dataclass ``cls``, typed and defaulted from it."""
    helps = field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = helps.get(f.name) or " "
        if isinstance(default, bool):
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        elif isinstance(default, tuple):
            kind = type(default[0]) if default else str
            parser.add_argument(
                flag, dest=f.name, type=kind, nargs=len(default) or "+", default=default, help=help_text
            )
        else:
            parser.add_argument(flag, dest=f.name, type=type(default), default=default, help=help_text)


def dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            values[f.name] = tuple(value) if isinstance(f.default, tuple) else value
    return cls(**values)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# Each module adds its sub-commands with ``register(subparsers)``; keep one module per stage.
COMMAND_MODULES = (
    "omnifuse.data.synth.commands",
    "omnifuse.data.commands",
    "omnifuse.features.commands",
    "omnifuse.train_commands",
    "omnifuse.report_commands",
)


def default_workers() -> int:
    """CPU cores available to this process (capped at 8)."""
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 8))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnifuse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"omnifuse {omnifuse.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
