"""Open an EHR source by format name (``datasets.<name>.ehr.format``): ``mimic-iv`` or ``meds``; and turn
a failed read of a source into an error naming the damaged file (:func:`reading`)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from omnifuse.cohorts.mimic.tables import EhrSource, SourceError

FORMATS = ("mimic-iv", "meds")
READ_ERRORS = (OSError, EOFError, zlib.error, pl.exceptions.PolarsError)


def open_source(path: str | Path, fmt: str = "auto") -> EhrSource:
    """A MIMIC-IV CSV root (layout detected) or a MEDS dataset. ``auto``: MEDS when ``path`` is a
    parquet file or a folder holding parquet files but no MIMIC-IV ``hosp``/``core`` folder."""
    from omnifuse.cohorts.mimic.meds import MedsSource
    from omnifuse.cohorts.mimic.mimic_iv import MimicIVSource

    path = Path(path)
    if not str(path) or str(path) == ".":
        raise ValueError("no EHR source path given (datasets.<name>.ehr.path)")
    if fmt == "auto":
        is_mimic = path.is_dir() and ((path / "hosp").is_dir() or (path / "core").is_dir())
        fmt = "mimic-iv" if is_mimic else "meds"
    if fmt == "mimic-iv":
        return MimicIVSource(path)
    if fmt == "meds":
        return MedsSource(path)
    raise ValueError(f"unknown EHR format {fmt!r} (one of {FORMATS} or auto)")


def source_files(source: EhrSource) -> list[Path]:
    """The files a source reads (MIMIC-IV tables, MEDS parquet files)."""
    paths = getattr(source, "paths", None)
    if isinstance(paths, dict):
        return [Path(p) for p in paths.values()]
    return [Path(p) for p in getattr(source, "files", [])]


def file_problem(path: Path) -> str | None:
    """What is wrong with one source file (read to the end: gzip stream and CRC, parquet footer), or
    None when it reads cleanly. Used on the error path only: it reads the whole file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                while f.read(1 << 24):
                    pass
        elif path.suffix == ".parquet":
            pl.read_parquet_metadata(path)
            pl.scan_parquet(path).select(pl.len()).collect()
    except EOFError:
        return "truncated gzip stream (the file ends before the end-of-stream marker)"
    except (OSError, zlib.error, pl.exceptions.PolarsError) as exc:
        return " ".join(str(exc).split())[:200] or type(exc).__name__
    return None


def explain(source: EhrSource, exc: BaseException) -> SourceError:
    """A :class:`SourceError` naming the first damaged file of ``source`` (and what is wrong with it),
    or naming the source when every file reads cleanly."""
    for path in source_files(source):
        problem = file_problem(path)
        if problem is not None:
            return SourceError(f"{path}: cannot be read: {problem}")
    text = " ".join(str(exc).split()) or type(exc).__name__
    return SourceError(
        f"{source.description}: cannot read the EHR source ({type(exc).__name__}: {text[:300]})"
    )


@contextmanager
def reading(source: EhrSource) -> Iterator[None]:
    """Run a read of ``source``; a low-level failure (a truncated gzip table gives polars' bare
    "unexpected end of file") becomes a :class:`SourceError` naming the damaged file."""
    try:
        yield
    except SourceError:
        raise
    except READ_ERRORS as exc:
        if isinstance(exc, FileNotFoundError) and exc.filename:
            raise
        raise explain(source, exc) from exc
