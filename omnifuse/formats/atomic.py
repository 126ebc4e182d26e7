"""Atomic, deterministic file writing shared by every stage.

Nothing is ever left half-written under its final name: each writer produces a temporary file in the
target directory and renames it into place only after it was written completely. Gzip streams are
written with a zero mtime and no embedded file name, so the same content gives byte-identical files.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

GZIP_LEVEL = 6


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(path: Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give them the usual umask-based mode."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _default_mode(tmp, is_dir=False)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; move it onto ``path`` if the block succeeds.

    If ``path`` exists and is not empty, raise ``FileExistsError`` unless ``overwrite`` is true, in
    which case the old directory is replaced only once the new one is complete.
    """
    final = Path(path)
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise FileExistsError(f"{final} exists and is not empty (use overwrite / --overwrite to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        _default_mode(tmp, is_dir=True)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def gzip_bytes(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """Gzip ``data`` deterministically (mtime 0, no file name in the header)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=level, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


@contextmanager
def gzip_writer(path: str | os.PathLike[str], level: int = GZIP_LEVEL) -> Iterator[BinaryIO]:
    """Open a deterministic gzip stream for binary writing, renamed into place when closed cleanly."""
    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0) as gz,
    ):
        yield gz  # type: ignore[misc]


@contextmanager
def gzip_text_writer(path: str | os.PathLike[str], level: int = GZIP_LEVEL) -> Iterator[TextIO]:
    """Text (UTF-8, ``\\n`` newlines) variant of :func:`gzip_writer`."""
    with gzip_writer(path, level) as gz:
        text = io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
        try:
            yield text
        finally:
            text.flush()
            text.detach()
