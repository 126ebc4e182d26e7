"""MIMIC-IV raw CSV tables (``.csv`` or ``.csv.gz``), v1.0 and v2.x layouts, detected automatically.

v2.x keeps ``patients`` and ``admissions`` under ``hosp/``, v1.0 under ``core/``; ``icustays`` and
``chartevents`` are under ``icu/``, ``diagnoses_icd`` and ``labevents`` under ``hosp/`` in both. Only the
columns the pipeline uses are required (so ``race`` vs ``ethnicity`` does not matter); a missing file or
column raises :class:`SourceError` naming it.

``chartevents`` and ``labevents`` are never loaded whole: :meth:`MimicIVSource.event_scans` returns lazy
scans with the item-id filter pushed into the scan; the EHR extraction runs them on the streaming engine.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from omnifuse.cohorts.mimic.tables import (
    TIME,
    EventScan,
    HospitalTables,
    SourceError,
    parse_times,
)

log = logging.getLogger(__name__)

LAYOUT_DIRS = {"v2": "hosp", "v1": "core"}  # where patients and admissions live
TABLES = {  # table -> (folder per layout, required columns)
    "patients": (None, ("subject_id", "gender", "anchor_age", "anchor_year", "dod")),
    "admissions": (None, ("subject_id", "hadm_id", "admittime", "dischtime", "deathtime")),
    "icustays": (
        "icu",
        ("subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit", "intime", "outtime"),
    ),
    "diagnoses_icd": ("hosp", ("subject_id", "hadm_id", "icd_code", "icd_version")),
    "chartevents": ("icu", ("subject_id", "hadm_id", "stay_id", "charttime", "itemid", "value", "valuenum")),
    "labevents": ("hosp", ("subject_id", "hadm_id", "charttime", "itemid", "value", "valuenum")),
}
CHART_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
EVENT_OVERRIDES = {
    "subject_id": pl.Int64,
    "hadm_id": pl.Int64,
    "stay_id": pl.Int64,
    "itemid": pl.Int64,
    "charttime": pl.String,
    "value": pl.String,
    "valuenum": pl.Float64,
}


def _find(root: Path, rel: str) -> Path | None:
    for suffix in (".csv.gz", ".csv"):
        path = root / f"{rel}{suffix}"
        if path.is_file():
            return path
    return None


def detect_layout(root: str | Path) -> str:
    """``"v2"`` (``hosp/patients``) or ``"v1"`` (``core/patients``); raise naming what was looked for."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MIMIC-IV root not found: {root}")
    for layout, folder in LAYOUT_DIRS.items():
        if _find(root, f"{folder}/patients") is not None:
            return layout
    raise SourceError(
        f"{root}: no MIMIC-IV patients table: expected hosp/patients.csv[.gz] (v2.x) or "
        f"core/patients.csv[.gz] (v1.0)"
    )


def _header(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            line = f.readline()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read the CSV header ({exc})") from exc
    return [c.strip().strip('"') for c in line.rstrip("\r\n").split(",")]


class MimicIVSource:
    """A MIMIC-IV root with the v1.0 or v2.x layout."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.layout = detect_layout(self.root)
        version = "v2.x (hosp/)" if self.layout == "v2" else "v1.0 (core/)"
        self.description = f"MIMIC-IV {version} CSV at {self.root}"
        self.paths: dict[str, Path] = {}
        for table, (folder, columns) in TABLES.items():
            rel = f"{folder or LAYOUT_DIRS[self.layout]}/{table}"
            path = _find(self.root, rel)
            if path is None:
                raise SourceError(f"{self.description}: missing table {rel}.csv[.gz]")
            missing = [c for c in columns if c not in _header(path)]
            if missing:
                raise SourceError(f"{path}: missing column(s) {missing}")
            self.paths[table] = path

    def _read(self, table: str) -> pl.DataFrame:
        path = self.paths[table]
        columns = list(TABLES[table][1])
        try:
            frame = pl.read_csv(path, columns=columns, infer_schema=False)
        except (pl.exceptions.PolarsError, OSError, EOFError) as exc:
            hint = " (truncated or damaged gzip file?)" if path.suffix == ".gz" else ""
            raise SourceError(f"{path}: cannot read ({' '.join(str(exc).split())}){hint}") from exc
        return frame

    @staticmethod
    def _ints(frame: pl.DataFrame, columns: Iterable[str], where: Path) -> pl.DataFrame:
        exprs = []
        for col in columns:
            parsed = pl.col(col).str.strip_chars().cast(pl.Int64, strict=False)
            bad = frame.filter(pl.col(col).is_not_null() & (pl.col(col) != "") & parsed.is_null())
            if bad.height:
                raise SourceError(f"{where}: column {col!r} has a non-integer value {bad[col][0]!r}")
            exprs.append(parsed.alias(col))
        return frame.with_columns(exprs)

    def tables(self) -> HospitalTables:
        """patients, admissions, ICU stays and diagnoses, normalised (see :mod:`tables`)."""
        log.info("reading hospital tables of %s", self.description)
        pat = self._ints(
            self._read("patients"), ("subject_id", "anchor_age", "anchor_year"), self.paths["patients"]
        )
        pat = parse_times(pat, ["dod"], str(self.paths["patients"]), "subject_id").with_columns(
            pl.lit(None, TIME).alias("birth")
        )
        adm = self._ints(self._read("admissions"), ("subject_id", "hadm_id"), self.paths["admissions"])
        adm = parse_times(
            adm, ["admittime", "dischtime", "deathtime"], str(self.paths["admissions"]), "hadm_id"
        )
        icu = self._ints(self._read("icustays"), ("subject_id", "hadm_id", "stay_id"), self.paths["icustays"])
        icu = parse_times(icu, ["intime", "outtime"], str(self.paths["icustays"]), "stay_id")
        dia = self._ints(
            self._read("diagnoses_icd"), ("subject_id", "hadm_id", "icd_version"), self.paths["diagnoses_icd"]
        ).with_columns(
            pl.col("icd_code").str.strip_chars().str.to_uppercase().str.replace_all(".", "", literal=True)
        )
        return HospitalTables(pat, adm, icu, dia, self.description)

    def event_scans(self, itemids: Iterable[int]) -> list[EventScan]:
        """Lazy scans of ``chartevents`` (linked by ``stay_id``) and ``labevents`` (by ``hadm_id``),
        restricted to ``itemids`` inside the scan; ``charttime`` is parsed strictly."""
        ids = sorted({int(i) for i in itemids})
        scans = []
        for table, link in (("chartevents", "stay_id"), ("labevents", "hadm_id")):
            path = self.paths[table]
            header = _header(path)
            overrides = {c: t for c, t in EVENT_OVERRIDES.items() if c in header}
            scan = (
                pl.scan_csv(path, schema_overrides=overrides)
                .filter(pl.col("itemid").is_in(ids))
                .select(
                    pl.col("subject_id"),
                    pl.col("hadm_id"),
                    pl.col("stay_id") if "stay_id" in header else pl.lit(None, pl.Int64).alias("stay_id"),
                    pl.col("charttime").str.strip_chars().str.strptime(TIME, CHART_TIME_FORMAT),
                    pl.col("itemid"),
                    pl.col("value"),
                    pl.col("valuenum"),
                )
            )
            scans.append(EventScan(str(path), scan, link))
        return scans
