"""Cohort tables for the feature tests (built here until the cohort stage lands) and how extraction
reads them: which samples, which input paths, and that the cohort's availability is respected.

The builders follow the cohort contract of DESIGN.md and omnifuse/cohort.py: MIMIC cohorts carry
``cxr_path`` (relative to the MIMIC-CXR-JPG root) and ``rep_path`` (relative to the reports root) from
``pair_cxr`` / ``attach_reports``; manifest cohorts carry ``ct_path``, ``pet_path``, ``rep_path``
relative to the manifest's folder. Other feature test files import them from here."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from omnifuse.cohort import CohortMeta, write_cohort
from omnifuse.data.cxr_pairing import attach_reports, pair_cxr, read_cxr_metadata
from omnifuse.data.manifest import parse_roi
from omnifuse.data.synth.lung import LungSynthConfig, generate_lung
from omnifuse.data.synth.mimic import MimicSynthConfig, generate_mimic
from omnifuse.features.extract import inputs_digest, samples_from_cohort

SMALL_LUNG = {
    "ct_shape": (32, 32, 16),
    "ct_spacing": (7.0, 7.0, 10.0),
    "pet_shape": (16, 16, 8),
    "pet_spacing": (14.0, 14.0, 20.0),
}


def make_mimic(root: Path, n_stays: int = 60, seed: int = 0) -> Path:
    """A small synthetic hospital (with X-rays and reports) under ``root``."""
    generate_mimic(root, MimicSynthConfig(n_stays=n_stays, image_columns=64, seed=seed))
    return root


def mimic_cohort(mimic: Path, out: Path, task: str = "ihm") -> Path:
    """A cohort of every ICU stay (no exclusions), AP views in [intime, intime + 48 h] for ``ihm``,
    [intime, outtime] otherwise."""
    stays = pl.read_csv(mimic / "mimic-iv" / "icu" / "icustays.csv.gz", try_parse_dates=True)
    stays = stays.with_columns(
        sample_id=pl.col("stay_id").cast(pl.String),
        patient_id=pl.col("subject_id").cast(pl.String),
        end=pl.col("intime") + timedelta(hours=48) if task == "ihm" else pl.col("outtime"),
    )
    paired = pair_cxr(stays, read_cxr_metadata(mimic / "mimic-cxr-jpg"), "end")
    paired = attach_reports(paired, mimic / "mimic-cxr-reports")
    truth = pl.read_parquet(mimic / "ground_truth.parquet").select(
        pl.col("stay_id"), pl.col("in_hospital_death").cast(pl.Int64).alias("y_ihm")
    )
    frame = paired.join(truth, on="stay_id", how="left", maintain_order="left").with_columns(
        fold=(pl.col("subject_id") % 5).cast(pl.Int64),
        has_ehr=pl.lit(True),
        y_ihm=pl.col("y_ihm").fill_null(0),
    )
    meta = CohortMeta("mimic", task, "binary", ("y_ihm",), ("ihm",), ("ehr", "cxr", "rep"), 5)
    path = out / "results" / "mimic" / "cohorts" / f"{task}.parquet"
    write_cohort(path, frame, meta)
    return path


def make_lung(root: Path, n_patients: int = 8, seed: int = 0, **options) -> Path:
    generate_lung(root, LungSynthConfig(n_patients=n_patients, seed=seed, **{**SMALL_LUNG, **options}))
    return root


def lung_cohort(lung: Path, out: Path, manifest: str = "manifest.csv") -> Path:
    """The subtype cohort of a manifest: one sample per patient, paths relative to the manifest."""
    frame = pl.read_csv(lung / manifest, infer_schema_length=0)
    classes = ("L1", "L2", "L3")
    cols = {}
    for m in ("ct", "pet", "rep"):
        path = pl.col(m).fill_null("").str.strip_chars()
        cols[f"{m}_path"] = pl.when(path == "").then(None).otherwise(path)
        cols[f"has_{m}"] = path != ""
    if "roi_lps_mm" in frame.columns:  # the generator's lesion box, as the manifest reader parses it
        boxes = [parse_roi(cell or "") for cell in frame["roi_lps_mm"].to_list()]
        frame = frame.with_columns(pl.Series("roi_lps_mm", boxes, dtype=pl.List(pl.Float64)))
    frame = frame.with_columns(
        sample_id=pl.col("patient_id"),
        fold=pl.int_range(pl.len()).cast(pl.Int64) % 5,
        y_subtype=pl.col("label").replace_strict(
            {c: i for i, c in enumerate(classes)}, return_dtype=pl.Int64
        ),
        **cols,
    )
    meta = CohortMeta("lung", "subtype", "multiclass", ("y_subtype",), classes, ("ct", "pet", "rep"), 5)
    path = out / "results" / "lung" / "cohorts" / "subtype.parquet"
    write_cohort(path, frame, meta)
    return path


@pytest.fixture(scope="module")
def mimic_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    mimic = make_mimic(root / "mimic")
    return mimic, mimic_cohort(mimic, root)


def test_mimic_samples_follow_the_cohort(mimic_data):
    mimic, cohort = mimic_data
    frame = pl.read_parquet(cohort)
    for modality, sub in (("cxr", "mimic-cxr-jpg"), ("rep", "mimic-cxr-reports")):
        samples = samples_from_cohort(cohort, modality, mimic / sub)
        assert [s.sample_id for s in samples] == frame["sample_id"].to_list()
        assert [s.available for s in samples] == frame[f"has_{modality}"].to_list()
        for s in samples:
            assert (s.path is not None) == s.available
            if s.available:
                assert s.path.is_file() and s.path.is_relative_to(mimic / sub)
            else:
                assert f"has_{modality} is false" in s.absent_reason
    assert 0 < frame["has_cxr"].sum() < frame.height  # natural missingness to exercise
    with pytest.raises(ValueError, match="no modality 'ct'"):
        samples_from_cohort(cohort, "ct", mimic)


def test_inputs_digest_changes_with_pairing(mimic_data):
    mimic, cohort = mimic_data
    root = mimic / "mimic-cxr-jpg"
    samples = samples_from_cohort(cohort, "cxr", root)
    digest = inputs_digest(samples, root)
    assert digest == inputs_digest(samples_from_cohort(cohort, "cxr", root), root)
    k = next(i for i, s in enumerate(samples) if s.available)
    flipped = [*samples[:k], replace(samples[k], path=None, available=False), *samples[k + 1 :]]
    assert inputs_digest(flipped, root) != digest


def test_lung_samples_from_the_manifest(tmp_path):
    lung = make_lung(tmp_path / "lung", n_patients=6, p_pet=0.5, p_rep=0.5)
    cohort = lung_cohort(lung, tmp_path)
    manifest = pl.read_csv(lung / "manifest.csv", infer_schema_length=0)
    for m in ("ct", "pet", "rep"):
        samples = samples_from_cohort(cohort, m, lung)
        assert [s.available for s in samples] == manifest[m].fill_null("").ne("").to_list()
        assert all(s.path.exists() for s in samples if s.available)
        # volumes carry the lesion box of the manifest (reports have no region of interest)
        for s, cell in zip(samples, manifest["roi_lps_mm"].fill_null("").to_list(), strict=True):
            if m == "rep" or not cell:
                assert s.roi is None
            else:
                assert s.roi.space == "lps_mm" and list(s.roi.box) == parse_roi(cell)
    # an ROI is part of the inputs digest (a changed box re-extracts the sample)
    samples = samples_from_cohort(cohort, "ct", lung)
    k = next(i for i, s in enumerate(samples) if s.roi is not None)
    moved = replace(samples[k], roi=replace(samples[k].roi, box=(0.0,) * 6))
    assert inputs_digest([*samples[:k], moved, *samples[k + 1 :]], lung) != inputs_digest(samples, lung)
