"""The cohort-table contract: self-describing parquet, validated on write and read."""

from __future__ import annotations

import polars as pl
import pytest

from omnifuse.formats.cohort import (
    CohortError,
    CohortMeta,
    Roi,
    cohort_digest,
    read_cohort,
    sample_rois,
    write_cohort,
)

META = CohortMeta("mimic", "ihm", "binary", ("y_ihm",), ("in-hospital mortality",), ("ehr", "cxr"), 2)


def frame(**overrides):
    base = {
        "sample_id": ["1", "2", "3", "4"], "patient_id": ["a", "a", "b", "c"], "fold": [0, 0, 1, 1],
        "y_ihm": [0, 1, 0, 0], "has_ehr": [True] * 4, "has_cxr": [True, False, True, False],
    }  # fmt: skip
    base.update(overrides)
    return pl.DataFrame(base)


def test_round_trip_keeps_rows_and_task_description(tmp_path):
    write_cohort(tmp_path / "ihm.parquet", frame(), META)
    back, meta = read_cohort(tmp_path / "ihm.parquet")
    assert meta == META and back.equals(frame())
    assert meta.n_outputs == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fold": [0, 1, 1, 1]}, "patient 'a' appears in more than one fold"),
        ({"sample_id": ["1", "1", "3", "4"]}, "duplicate sample_id '1'"),
        ({"y_ihm": [0, 2, 0, 0]}, "label y_ihm of sample '2'"),
        ({"y_ihm": [0, None, 0, 0]}, "label y_ihm is missing for sample '2'"),
        ({"fold": [0, 0, 2, 2]}, "outside 0..1"),
        ({"has_cxr": [1, 0, 1, 0]}, "has_cxr must be a boolean"),
    ],
)
def test_broken_tables_are_refused_naming_the_culprit(tmp_path, overrides, message):
    with pytest.raises(CohortError, match=message):
        write_cohort(tmp_path / "bad.parquet", frame(**overrides), META)
    assert not (tmp_path / "bad.parquet").exists()


def test_missing_columns_and_foreign_files(tmp_path):
    with pytest.raises(CohortError, match=r"missing column\(s\) \['has_cxr'\]"):
        write_cohort(tmp_path / "x.parquet", frame().drop("has_cxr"), META)
    frame().write_parquet(tmp_path / "plain.parquet")
    with pytest.raises(CohortError, match=r"no .omnifuse\.cohort. metadata"):
        read_cohort(tmp_path / "plain.parquet")


def test_meta_rules():
    with pytest.raises(CohortError, match="exactly one label column"):
        CohortMeta("lung", "subtype", "multiclass", ("y_a", "y_b"), ("L1", "L2"), ("ct",), 5)
    multi = CohortMeta("lung", "subtype", "multiclass", ("y_subtype",), ("L1", "L2", "L3"), ("ct", "pet"), 5)
    assert multi.n_outputs == 3
    with pytest.raises(CohortError, match="modalities"):
        CohortMeta("x", "t", "binary", ("y_t",), ("t",), ("mri",), 5)


def test_regions_of_interest_are_boxes_of_six_numbers(tmp_path):
    box = [-10.0, -5.0, 20.0, 10.0, 5.0, 40.0]
    ok = frame(roi_lps_mm=pl.Series([box, None, box, None], dtype=pl.List(pl.Float64)))
    write_cohort(tmp_path / "roi.parquet", ok, META)
    assert read_cohort(tmp_path / "roi.parquet")[0]["roi_lps_mm"].to_list()[0] == box
    for bad, message in (
        ([1.0, 2.0, 3.0], r"roi_lps_mm of sample '2' must be \[x0, y0, z0, x1, y1, z1\]"),
        ([10.0, 0, 0, -10.0, 0, 0], "x0 <= x1"),
        ([0.0, 0, 0, float("nan"), 0, 0], "6 finite numbers"),
    ):
        broken = frame(roi_lps_mm=pl.Series([box, bad, None, None], dtype=pl.List(pl.Float64)))
        with pytest.raises(CohortError, match=message):
            write_cohort(tmp_path / "bad.parquet", broken, META)
    with pytest.raises(CohortError, match="ct_roi_vox must be a list of 6 numbers"):
        write_cohort(tmp_path / "bad.parquet", frame(ct_roi_vox=["1 2 3"] * 4), META)


def test_regions_of_interest_are_part_of_the_digest_and_reach_the_volumes():
    box = [-10.0, -5.0, 20.0, 10.0, 5.0, 40.0]
    plain = cohort_digest(frame(), META)
    with_roi = frame(roi_lps_mm=pl.Series([box, None, box, None], dtype=pl.List(pl.Float64)))
    moved = frame(roi_lps_mm=pl.Series([box, None, [0.0] * 6, None], dtype=pl.List(pl.Float64)))
    assert len({plain, cohort_digest(with_roi, META), cohort_digest(moved, META)}) == 3
    assert cohort_digest(with_roi, META) == cohort_digest(with_roi.clone(), META)
    # the modality's voxel ROI wins over the shared millimetre ROI; other modalities get none
    both = with_roi.with_columns(
        pl.Series("ct_roi_vox", [None, None, [1.0, 2, 3, 1, 2, 3], None], dtype=pl.List(pl.Float64))
    )
    rois = sample_rois(both, "ct")
    assert rois[0] == Roi("lps_mm", tuple(box), "roi_lps_mm") and rois[1] is None
    assert rois[2].space == "voxel" and rois[2].centre == (1.0, 2.0, 3.0)
    assert sample_rois(both, "pet")[2].space == "lps_mm" and sample_rois(both, "rep") == [None] * 4
