"""The normalised hospital tables every EHR source is turned into, and the event-stream interface.

Schemas (polars dtypes; times are naive ``Datetime("us")``):

* ``patients``:   subject_id i64, gender str, anchor_age i64?, anchor_year i64?, birth datetime?,
  dod datetime? (date of death at midnight);
* ``admissions``: subject_id i64, hadm_id i64, admittime, dischtime, deathtime?;
* ``icustays``:   subject_id i64, hadm_id i64, stay_id i64, first_careunit str, last_careunit str,
  intime, outtime?;
* ``diagnoses``:  subject_id i64, hadm_id i64, icd_code str (upper case, no dots), icd_version i64.

Events (:meth:`EhrSource.event_scans`) are lazy scans with subject_id i64, hadm_id i64?, stay_id i64?,
charttime datetime, itemid i64, value str? (charted text), valuenum f64?; each scan names the column
that links its rows to ICU stays: ``stay_id`` (chartevents), ``hadm_id`` (labevents) or ``subject_id``
(MEDS, linked by subject and time).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import polars as pl

TIME = pl.Datetime("us")
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")

PATIENTS = {
    "subject_id": pl.Int64,
    "gender": pl.String,
    "anchor_age": pl.Int64,
    "anchor_year": pl.Int64,
    "birth": TIME,
    "dod": TIME,
}
ADMISSIONS = {
    "subject_id": pl.Int64,
    "hadm_id": pl.Int64,
    "admittime": TIME,
    "dischtime": TIME,
    "deathtime": TIME,
}
ICUSTAYS = {
    "subject_id": pl.Int64,
    "hadm_id": pl.Int64,
    "stay_id": pl.Int64,
    "first_careunit": pl.String,
    "last_careunit": pl.String,
    "intime": TIME,
    "outtime": TIME,
}
DIAGNOSES = {"subject_id": pl.Int64, "hadm_id": pl.Int64, "icd_code": pl.String, "icd_version": pl.Int64}
EVENTS = {
    "subject_id": pl.Int64,
    "hadm_id": pl.Int64,
    "stay_id": pl.Int64,
    "charttime": TIME,
    "itemid": pl.Int64,
    "value": pl.String,
    "valuenum": pl.Float64,
}


class SourceError(ValueError):
    """Malformed EHR input (the message names the file and the column, row or id)."""


@dataclass
class HospitalTables:
    patients: pl.DataFrame
    admissions: pl.DataFrame
    icustays: pl.DataFrame
    diagnoses: pl.DataFrame
    description: str  # e.g. "MIMIC-IV v2.x CSV at /data/mimic-iv"

    def __post_init__(self) -> None:
        for name, schema in (
            ("patients", PATIENTS),
            ("admissions", ADMISSIONS),
            ("icustays", ICUSTAYS),
            ("diagnoses", DIAGNOSES),
        ):
            frame = getattr(self, name)
            setattr(self, name, frame.select([pl.col(c).cast(t) for c, t in schema.items()]))
        dup = self.icustays.filter(pl.col("stay_id").is_duplicated())
        if dup.height:
            raise SourceError(f"{self.description}: duplicate ICU stay id {dup['stay_id'][0]} in icustays")
        dup = self.admissions.filter(pl.col("hadm_id").is_duplicated())
        if dup.height:
            raise SourceError(f"{self.description}: duplicate hadm_id {dup['hadm_id'][0]} in admissions")
        dup = self.patients.filter(pl.col("subject_id").is_duplicated())
        if dup.height:
            raise SourceError(f"{self.description}: duplicate subject_id {dup['subject_id'][0]} in patients")


@dataclass(frozen=True)
class EventScan:
    """A lazy scan of events (columns of :data:`EVENTS`) and the column that links them to stays.

    ``skipped`` (optional) counts the rows of the table whose item id is not among the requested ones
    (one row, column ``rows``). It reads the same projected scan as ``scan`` without filtering it, so that
    polars reads the table once when both run in one query (as long as both are light: polars buffers a
    shared scan for the slower of its consumers)."""

    name: str  # file or dataset, for messages
    scan: pl.LazyFrame
    link: str  # "stay_id" | "hadm_id" | "subject_id"
    skipped: pl.LazyFrame | None = None


class EhrSource(Protocol):
    """What the cohort builder and the EHR extraction need from a source."""

    description: str

    def tables(self) -> HospitalTables: ...

    def event_scans(self, itemids: Iterable[int]) -> list[EventScan]: ...


def parse_times(frame: pl.DataFrame, columns: Iterable[str], where: str, id_column: str) -> pl.DataFrame:
    """Parse text columns as datetimes (``YYYY-MM-DD HH:MM:SS`` or a date); raise :class:`SourceError`
    naming the file, column and row id of the first unparseable value."""
    out = []
    for col in columns:
        if col not in frame.columns:
            continue
        if frame[col].dtype == TIME:
            continue
        if frame[col].dtype.is_temporal():
            out.append(pl.col(col).cast(TIME))
            continue
        text = pl.col(col).cast(pl.String).str.strip_chars()
        parsed = pl.coalesce([text.str.strptime(TIME, fmt, strict=False) for fmt in TIME_FORMATS])
        check = frame.select(text.alias("t"), parsed.alias("p"), pl.col(id_column).alias("id")).filter(
            pl.col("t").is_not_null() & (pl.col("t") != "") & pl.col("p").is_null()
        )
        if check.height:
            row = check.row(0, named=True)
            raise SourceError(
                f"{where}: unparseable time in column {col!r} ({id_column} {row['id']}): {row['t']!r} "
                f"({check.height} row(s); expected YYYY-MM-DD HH:MM:SS)"
            )
        out.append(parsed.alias(col))
    return frame.with_columns(out) if out else frame
