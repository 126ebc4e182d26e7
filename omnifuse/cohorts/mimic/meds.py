"""MIMIC-IV in the MEDS event format (Medical Event Data Standard), e.g. the MIMIC-IV demo in MEDS.

A MEDS dataset is one parquet file or a folder of them (``data/**/*.parquet`` when a ``data/`` folder
exists, else every parquet file below the folder) with the columns ``subject_id``, ``time``, ``code``
and ``numeric_value`` (older exports: ``value``); ``text_value`` is used when present. MEDS has no
``hadm_id`` / ``stay_id``, so the hospital tables are rebuilt from event codes:

* ``HOSPITAL_ADMISSION//<type>//<location>`` and ``HOSPITAL_DISCHARGE//<location>``: the k-th admission
  of a subject (by time) pairs with its k-th discharge; ``HOSPITAL_DISCHARGE//DIED`` sets
  ``deathtime`` to the discharge time. ``hadm_id = subject_id * 1000 + k``.
* ``ICU_ADMISSION//<careunit>`` and ``ICU_DISCHARGE//<careunit>``: the k-th ICU stay of a subject, first
  and last care unit from the two codes; ``stay_id = subject_id * 1000 + k``. A stay belongs to the
  admission whose interval contains its ``intime``, else to the admission that starts during the
  stay (same-day surgery: the ICU stay starts before the recorded admission).
* ``MEDS_BIRTH`` (birth), ``MEDS_DEATH`` (date of death), ``GENDER//<M|F>``.
* ``DIAGNOSIS//ICD//<9|10>//<code>``: diagnoses, charted at the discharge time of their admission.
* ``LAB//<itemid>//<unit>``: charted (item ids >= 220000, former chartevents) and lab events with
  ``numeric_value``; they carry no ids and are linked to stays by subject and time.

Ages: MEDS keeps the birth date (anchor year minus anchor age), so ``anchor_age`` is left empty and the
cohort rules use the age at admission (see :mod:`omnifuse.cohorts.mimic.stays`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from omnifuse.cohorts.mimic.tables import TIME, EventScan, HospitalTables, SourceError

log = logging.getLogger(__name__)

ID_FACTOR = 1000  # hadm_id / stay_id = subject_id * ID_FACTOR + k
REQUIRED = ("subject_id", "time", "code")
VALUE_COLUMNS = ("numeric_value", "value")  # MEDS >= 0.3 names it numeric_value
STRUCTURE = (
    r"^(ICU_ADMISSION|ICU_DISCHARGE|HOSPITAL_ADMISSION|HOSPITAL_DISCHARGE|MEDS_BIRTH|MEDS_DEATH|GENDER"
    r"|DIAGNOSIS//ICD)"
)
LAB = r"^LAB//(\d+)(?://|$)"


def meds_files(path: str | Path) -> list[Path]:
    """The parquet files of a MEDS dataset (a file, or a folder with ``data/`` or parquet files)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"MEDS data not found: {path}")
    base = path / "data" if (path / "data").is_dir() else path
    files = sorted(p for p in base.rglob("*.parquet") if "metadata" not in p.relative_to(path).parts[:1])
    if not files:
        raise SourceError(f"{path}: no parquet files (expected MEDS data/*.parquet or *.parquet)")
    return files


class MedsSource:
    """A MEDS dataset holding MIMIC-IV events."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.files = meds_files(self.path)
        self.description = f"MEDS data at {self.path} ({len(self.files)} file(s))"
        try:
            schema = pl.scan_parquet(self.files[0]).collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            text = " ".join(str(exc).split())
            raise SourceError(f"{self.files[0]}: not a readable parquet file ({text[:200]})") from exc
        missing = [c for c in REQUIRED if c not in schema]
        value = next((c for c in VALUE_COLUMNS if c in schema), None)
        if value is None:
            missing.append("numeric_value")
        if missing:
            raise SourceError(f"{self.files[0]}: missing MEDS column(s) {missing}")
        self.value_column = value
        self.text_column = "text_value" if "text_value" in schema else None
        if not schema["time"].is_temporal():
            raise SourceError(f"{self.files[0]}: column 'time' must be a datetime, got {schema['time']}")

    def _scan(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.files)

    def tables(self) -> HospitalTables:
        from omnifuse.cohorts.mimic.sources import reading

        log.info("rebuilding hospital tables from %s", self.description)
        with reading(self):
            ev = (
                self._scan()
                .filter(pl.col("code").str.contains(STRUCTURE))
                .select(pl.col("subject_id").cast(pl.Int64), pl.col("time").cast(TIME), "code")
                .collect()
            )
        ev = ev.with_columns(
            kind=pl.col("code").str.extract(r"^([A-Z_]+)", 1),
            rest=pl.col("code").str.replace(r"^[A-Z_]+(//)?", ""),
        )
        admissions = self._pairs(ev, "HOSPITAL_ADMISSION", "HOSPITAL_DISCHARGE", "hadm_id")
        admissions = admissions.select(
            "subject_id",
            "hadm_id",
            pl.col("start").alias("admittime"),
            pl.col("end").alias("dischtime"),
            pl.when(pl.col("end_rest").str.starts_with("DIED")).then(pl.col("end")).alias("deathtime"),
        )
        stays = self._pairs(ev, "ICU_ADMISSION", "ICU_DISCHARGE", "stay_id").select(
            "subject_id",
            "stay_id",
            pl.col("start_rest").alias("first_careunit"),
            pl.col("end_rest").alias("last_careunit"),
            pl.col("start").alias("intime"),
            pl.col("end").alias("outtime"),
        )
        stays = self._link_stays(stays, admissions)
        subjects = ev.select("subject_id").unique()
        first = ev.group_by("subject_id", "kind").agg(pl.col("time").min(), pl.col("rest").first())
        patients = subjects.join(
            first.filter(pl.col("kind") == "MEDS_BIRTH").select("subject_id", pl.col("time").alias("birth")),
            on="subject_id",
            how="left",
        ).join(
            first.filter(pl.col("kind") == "MEDS_DEATH").select("subject_id", pl.col("time").alias("dod")),
            on="subject_id",
            how="left",
        )
        patients = patients.join(
            first.filter(pl.col("kind") == "GENDER").select("subject_id", pl.col("rest").alias("gender")),
            on="subject_id",
            how="left",
        ).with_columns(anchor_age=pl.lit(None, pl.Int64), anchor_year=pl.lit(None, pl.Int64))
        diagnoses = self._diagnoses(ev, admissions)
        log.info(
            "MEDS: %d subjects, %d admissions, %d ICU stays, %d diagnoses",
            patients.height,
            admissions.height,
            stays.height,
            diagnoses.height,
        )
        return HospitalTables(patients, admissions, stays, diagnoses, self.description)

    def _pairs(self, ev: pl.DataFrame, start: str, end: str, id_name: str) -> pl.DataFrame:
        """k-th ``start`` event of a subject with its k-th ``end`` event."""

        def ranked(kind: str, prefix: str) -> pl.DataFrame:
            return (
                ev.filter(pl.col("kind") == kind)
                .sort("subject_id", "time", "rest")
                .with_columns(k=pl.int_range(1, pl.len() + 1).over("subject_id"))
                .select(
                    "subject_id", "k", pl.col("time").alias(prefix), pl.col("rest").alias(f"{prefix}_rest")
                )
            )

        a, b = ranked(start, "start"), ranked(end, "end")
        counts = (
            a.group_by("subject_id")
            .len("n_start")
            .join(b.group_by("subject_id").len("n_end"), on="subject_id", how="full", coalesce=True)
            .fill_null(0)
            .filter(pl.col("n_start") != pl.col("n_end"))
        )
        if counts.height:
            row = counts.row(0, named=True)
            raise SourceError(
                f"{self.description}: subject {row['subject_id']} has {row['n_start']} {start} but "
                f"{row['n_end']} {end} events"
            )
        if a.height and a["k"].max() >= ID_FACTOR:
            raise SourceError(f"{self.description}: a subject has {ID_FACTOR} or more {start} events")
        out = a.join(b, on=["subject_id", "k"], how="inner")
        bad = out.filter(pl.col("end") < pl.col("start"))
        if bad.height:
            raise SourceError(
                f"{self.description}: subject {bad['subject_id'][0]}: {end} before {start} "
                f"({bad['end'][0]} < {bad['start'][0]})"
            )
        return out.with_columns((pl.col("subject_id") * ID_FACTOR + pl.col("k")).alias(id_name))

    @staticmethod
    def _link_stays(stays: pl.DataFrame, admissions: pl.DataFrame) -> pl.DataFrame:
        cand = stays.join(
            admissions.select("subject_id", "hadm_id", "admittime", "dischtime"), on="subject_id"
        )
        cand = cand.filter(
            (pl.col("admittime") <= pl.col("outtime")) & (pl.col("dischtime") >= pl.col("intime"))
        )
        cand = cand.with_columns(
            contains=(pl.col("admittime") <= pl.col("intime")) & (pl.col("intime") <= pl.col("dischtime"))
        )
        best = (
            cand.sort(["stay_id", "contains", "admittime"], descending=[False, True, False])
            .group_by("stay_id", maintain_order=True)
            .agg(
                pl.when(pl.col("contains").first())
                .then(pl.col("hadm_id").filter(pl.col("contains")).last())
                .otherwise(pl.col("hadm_id").first())
                .alias("hadm_id")
            )
        )
        return stays.join(best, on="stay_id", how="left")

    @staticmethod
    def _diagnoses(ev: pl.DataFrame, admissions: pl.DataFrame) -> pl.DataFrame:
        dx = ev.filter(pl.col("kind") == "DIAGNOSIS").with_columns(
            parts=pl.col("code").str.split("//"),
        )
        dx = dx.select(
            "subject_id",
            "time",
            pl.col("parts").list.get(2, null_on_oob=True).cast(pl.Int64, strict=False).alias("icd_version"),
            pl.col("parts")
            .list.get(3, null_on_oob=True)
            .str.strip_chars()
            .str.to_uppercase()
            .str.replace_all(".", "", literal=True)
            .alias("icd_code"),
        ).filter(pl.col("icd_version").is_not_null() & pl.col("icd_code").is_not_null())
        at_discharge = dx.join(
            admissions.select("subject_id", "hadm_id", pl.col("dischtime").alias("time")),
            on=["subject_id", "time"],
            how="inner",
        )
        rest = dx.join(
            at_discharge.select("subject_id", "time").unique(), on=["subject_id", "time"], how="anti"
        )
        inside = (
            rest.join(admissions.select("subject_id", "hadm_id", "admittime", "dischtime"), on="subject_id")
            .filter((pl.col("admittime") <= pl.col("time")) & (pl.col("time") <= pl.col("dischtime")))
            .select([*dx.columns, "hadm_id"])
        )
        dropped = (
            rest.height
            - inside.select("subject_id", "time").unique().join(rest, on=["subject_id", "time"]).height
        )
        if dropped:
            log.info("MEDS: %d diagnosis events outside any admission were ignored", dropped)
        out = pl.concat([at_discharge.select(inside.columns), inside])
        return out.select("subject_id", "hadm_id", "icd_code", "icd_version").unique(maintain_order=True)

    def event_scans(self, itemids: Iterable[int]) -> list[EventScan]:
        """One lazy scan of the ``LAB//<itemid>//...`` events of ``itemids`` (linked by subject and time)."""
        ids = sorted({int(i) for i in itemids})
        itemid = pl.col("code").str.extract(LAB, 1).cast(pl.Int64, strict=False)
        text = pl.col(self.text_column).cast(pl.String) if self.text_column else pl.lit(None, pl.String)
        scan = (
            self._scan()
            .filter(pl.col("code").str.starts_with("LAB//"))
            .select(
                pl.col("subject_id").cast(pl.Int64),
                pl.lit(None, pl.Int64).alias("hadm_id"),
                pl.lit(None, pl.Int64).alias("stay_id"),
                pl.col("time").cast(TIME).alias("charttime"),
                itemid.alias("itemid"),
                text.alias("value"),
                pl.col(self.value_column).cast(pl.Float64).alias("valuenum"),
            )
            .filter(pl.col("itemid").is_in(ids) & pl.col("charttime").is_not_null())
        )
        return [EventScan(self.description, scan, "subject_id")]
