"""Shared by the fault-injection tests: run a command in-process and read its one-line error."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from omnifuse.cli import main


def run_cli(args: Sequence[str], caplog: pytest.LogCaptureFixture) -> tuple[int, str]:
    """Exit status of ``omnifuse <args>`` and its ERROR lines (one line per error, no traceback)."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="omnifuse"):
        status = main([str(a) for a in args])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    for line in errors:
        assert "\n" not in line and "Traceback" not in line, line
    return status, "\n".join(errors)


def assert_fails(
    args: Sequence[str], caplog: pytest.LogCaptureFixture, *names: str, status: int = 2, absent=()
) -> str:
    """The command ends with ``status`` and one error line naming every one of ``names``, and leaves
    nothing at the paths ``absent``."""
    code, text = run_cli(args, caplog)
    assert code == status, f"exit {code}, expected {status}: {text}"
    assert len(text.splitlines()) == 1, text
    for name in names:
        assert str(name) in text, f"{name!r} not named in: {text}"
    for path in absent:
        assert not Path(path).exists(), f"{path} was written"
    return text


def flip_bytes(path: Path, count: int = 64) -> None:
    """Overwrite ``count`` bytes in the middle of ``path`` with their complement (the size is kept)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + count] = bytes(255 - b for b in data[mid : mid + count])
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
