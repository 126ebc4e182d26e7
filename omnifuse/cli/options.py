"""Command-line plumbing shared by the command modules: dataclass fields as typed ``--flags``, cache
arguments, worker counts."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import sys
from collections.abc import Sequence
from typing import Any


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


def default_workers() -> int:
    """CPU cores available to this process (capped at 8)."""
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 8))


def add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(), help="progress bars"
    )


def parse_caches(items: list[str]) -> dict[str, str]:
    """``["ehr=path", "cxr=path"]`` → ``{"ehr": "path", "cxr": "path"}`` (each modality once)."""
    caches: dict[str, str] = {}
    for item in items or []:
        modality, sep, path = item.partition("=")
        if not sep or not modality or not path:
            raise ValueError(f"--cache expects modality=path, got {item!r}")
        if modality in caches:
            raise ValueError(f"--cache given twice for {modality}")
        caches[modality] = path
    return caches


def add_cache_option(p: argparse.ArgumentParser, help_text: str = "feature cache, repeatable") -> None:
    p.add_argument("--cache", action="append", default=[], metavar="MODALITY=PATH", help=help_text)
