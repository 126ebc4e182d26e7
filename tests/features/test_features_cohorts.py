"""How extraction reads a cohort: which samples, which input paths (MIMIC: ``cxr_path`` relative to the
MIMIC-CXR-JPG root, ``rep_path`` relative to the reports root; manifest cohorts: ``ct_path``,
``pet_path``, ``rep_path`` relative to the manifest's folder), and that the cohort's availability is
respected. The cohort builders are in tests/helpers.py."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest

from omnifuse.cohorts.manifest import parse_roi
from omnifuse.features.extract import inputs_digest, samples_from_cohort
from tests.helpers import lung_cohort, make_lung, make_mimic, mimic_cohort


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
