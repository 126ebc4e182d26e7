"""Chest X-ray ↔ ICU stay pairing (MIMIC-CXR-JPG metadata) and the report of the paired study.

Rules (MedFuse-style, each a parameter):

* images are joined to stays on ``subject_id``; the study time is ``StudyDate`` + ``StudyTime``
  (``StudyTime`` is stored as a float in the real metadata, so ``84143.125`` means 08:41:43.125);
* an image qualifies when its ``ViewPosition`` is in ``views`` (default AP only) and its study time lies
  in the stay's window ``[intime, window_end]`` (both ends included): ``intime + 48 h`` for in-hospital
  mortality, ``outtime`` for phenotyping;
* the latest qualifying study wins; among its qualifying images the smallest ``dicom_id`` is taken, so
  the choice is deterministic;
* the report is ``files/p{first two digits}/p{subject_id}/s{study_id}.txt`` under the reports root;
  ``has_rep`` says the file exists and is not empty (whether it has a FINDINGS section is decided at
  feature extraction, which marks such samples as not present).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from omnifuse.cohorts.mimic.schema import CXR_METADATA, cxr_image_path, cxr_report_path

METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime")
PAIR_COLUMNS = ("cxr_study_id", "cxr_dicom_id", "cxr_study_time", "cxr_view", "cxr_path", "has_cxr")


def read_cxr_metadata(path: str | Path) -> pl.DataFrame:
    """The metadata table (``mimic-cxr-2.0.0-metadata.csv[.gz]`` or a MIMIC-CXR-JPG root) with a parsed
    ``study_time`` column. Raises ``ValueError`` naming the file and the missing column or bad row."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / CXR_METADATA, path / CXR_METADATA.removesuffix(".gz")]
        path = next((p for p in candidates if p.is_file()), candidates[0])
    if not path.is_file():
        raise FileNotFoundError(f"MIMIC-CXR-JPG metadata not found: {path}")
    text_columns = {
        "dicom_id": pl.String,
        "StudyTime": pl.String,
        "StudyDate": pl.String,
        "ViewPosition": pl.String,
    }
    frame = pl.read_csv(path, infer_schema_length=10000, schema_overrides=text_columns)
    missing = [c for c in METADATA_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    frame = frame.select(METADATA_COLUMNS)
    parts = pl.col("StudyTime").str.strip_chars().str.split_exact(".", 1)
    whole, frac = parts.struct.field("field_0"), parts.struct.field("field_1")
    stamp = pl.col("StudyDate").str.strip_chars() + whole.str.zfill(6)
    micro = frac.fill_null("").str.slice(0, 6).str.pad_end(6, "0").cast(pl.Int64, strict=False).fill_null(0)
    frame = frame.with_columns(
        study_time=stamp.str.strptime(pl.Datetime("us"), "%Y%m%d%H%M%S", strict=False)
        + pl.duration(microseconds=micro)
    )
    bad = frame.filter(pl.col("study_time").is_null())
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"{path}: {bad.height} row(s) with unparseable StudyDate/StudyTime, e.g. dicom_id "
            f"{row['dicom_id']} (StudyDate={row['StudyDate']!r}, StudyTime={row['StudyTime']!r})"
        )
    dup = frame.filter(pl.col("dicom_id").is_duplicated())
    if dup.height:
        raise ValueError(f"{path}: duplicate dicom_id {dup['dicom_id'][0]}")
    return frame.with_columns(pl.col("subject_id").cast(pl.Int64), pl.col("study_id").cast(pl.Int64))


def pair_cxr(
    stays: pl.DataFrame,
    metadata: pl.DataFrame,
    window_end: str,
    views: Sequence[str] = ("AP",),
) -> pl.DataFrame:
    """Add the paired image to every stay.

    ``stays`` needs ``sample_id``, ``subject_id``, ``intime`` and the ``window_end`` column (datetimes).
    Returns ``stays`` (same rows, same order) plus ``cxr_study_id``, ``cxr_dicom_id``,
    ``cxr_study_time``, ``cxr_view``, ``cxr_path`` (relative to the MIMIC-CXR-JPG root) and ``has_cxr``.
    """
    for col in ("sample_id", "subject_id", "intime", window_end):
        if col not in stays.columns:
            raise ValueError(f"pair_cxr: stays table lacks column {col!r}")
    images = metadata.filter(pl.col("ViewPosition").is_in(list(views))).select(
        "subject_id", "study_id", "dicom_id", "study_time", pl.col("ViewPosition").alias("cxr_view")
    )
    candidates = (
        stays.select(
            "sample_id", pl.col("subject_id").cast(pl.Int64), "intime", pl.col(window_end).alias("_end")
        )
        .join(images, on="subject_id", how="inner")
        .filter((pl.col("study_time") >= pl.col("intime")) & (pl.col("study_time") <= pl.col("_end")))
    )
    best = (
        candidates.sort(
            ["sample_id", "study_time", "study_id", "dicom_id"], descending=[False, True, True, False]
        )
        .group_by("sample_id", maintain_order=True)
        .first()
        .select(
            "sample_id",
            pl.col("study_id").alias("cxr_study_id"),
            pl.col("dicom_id").alias("cxr_dicom_id"),
            pl.col("study_time").alias("cxr_study_time"),
            "cxr_view",
        )
    )
    out = stays.join(best, on="sample_id", how="left", maintain_order="left")
    paths = [
        cxr_image_path(s, st, d) if d is not None else None
        for s, st, d in out.select("subject_id", "cxr_study_id", "cxr_dicom_id").iter_rows()
    ]
    return out.with_columns(
        cxr_path=pl.Series(paths, dtype=pl.String), has_cxr=pl.col("cxr_dicom_id").is_not_null()
    )


def attach_reports(cohort: pl.DataFrame, reports_root: str | Path | None) -> pl.DataFrame:
    """Add ``rep_path`` (relative to ``reports_root``) and ``has_rep`` for the paired study of each row.

    Without a reports root every ``has_rep`` is False."""
    root = Path(reports_root) if reports_root else None
    paths, present = [], []
    for subject, study in cohort.select("subject_id", "cxr_study_id").iter_rows():
        rel = cxr_report_path(subject, study) if study is not None else None
        ok = bool(rel and root and (root / rel).is_file() and (root / rel).stat().st_size > 0)
        paths.append(rel if ok else None)
        present.append(ok)
    return cohort.with_columns(rep_path=pl.Series(paths, dtype=pl.String), has_rep=pl.Series(present))
