"""Open an EHR source by format name (``datasets.<name>.ehr.format``): ``mimic-iv`` or ``meds``."""

from __future__ import annotations

from pathlib import Path

from omnifuse.cohorts.mimic.tables import EhrSource

FORMATS = ("mimic-iv", "meds")


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
