"""Chest X-ray to ICU stay pairing on constructed metadata."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from omnifuse.cohorts.cxr_pairing import attach_reports, pair_cxr, read_cxr_metadata
from omnifuse.cohorts.mimic.schema import cxr_report_path

INTIME = datetime(2150, 1, 1, 10, 0, 0)


def metadata(tmp_path, rows):
    header = (
        "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,"
        "StudyDate,StudyTime"
    )
    lines = [header] + [f"{d},{s},{st},X,{v},10,10,{date},{time}" for d, s, st, v, date, time in rows]
    path = tmp_path / "mimic-cxr-2.0.0-metadata.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def stays(window_hours=48):
    return pl.DataFrame({
        "sample_id": ["a", "b", "c"], "subject_id": [11000001, 11000002, 11000003],
        "intime": [INTIME] * 3, "end": [INTIME + timedelta(hours=window_hours)] * 3,
    })  # fmt: skip


def test_window_edges_view_filter_and_latest_study(tmp_path):
    rows = [
        # subject a: one study exactly at intime (inside), a later one 1 s after the window (outside)
        ("a1", 11000001, 50000001, "AP", 21500101, "100000.000"),
        ("a2", 11000001, 50000002, "AP", 21500103, "100001.000"),
        # subject b: AP early, PA later (filtered by view), LATERAL of the AP study, latest AP wins
        ("b1", 11000002, 50000010, "AP", 21500101, "120000"),
        ("b2", 11000002, 50000011, "AP", 21500102, "93000.5"),  # 09:30:00.5 without its leading zero
        ("b3", 11000002, 50000012, "PA", 21500102, "235959.0"),
        ("b4", 11000002, 50000011, "LATERAL", 21500102, "93000.5"),
        ("b0", 11000002, 50000011, "AP", 21500102, "93000.5"),  # second AP of that study: smaller id wins
        # subject c: only before intime
        ("c1", 11000003, 50000020, "AP", 21500101, "95959.999"),
    ]
    meta = read_cxr_metadata(metadata(tmp_path, rows))
    assert meta.filter(pl.col("dicom_id") == "b2")["study_time"][0] == datetime(2150, 1, 2, 9, 30, 0, 500000)
    paired = pair_cxr(stays(), meta, "end")
    assert paired["sample_id"].to_list() == ["a", "b", "c"]
    assert paired["cxr_dicom_id"].to_list() == ["a1", "b0", None]
    assert paired["has_cxr"].to_list() == [True, True, False]
    assert paired["cxr_path"][1] == "files/p11/p11000002/s50000011/b0.jpg"
    both = pair_cxr(stays(), meta, "end", views=("AP", "PA"))
    assert both["cxr_dicom_id"][1] == "b3"  # the later PA study qualifies now
    shorter = pair_cxr(stays(window_hours=12), meta, "end")
    assert shorter["cxr_dicom_id"].to_list() == ["a1", "b1", None]


def test_reports_follow_their_study(tmp_path):
    rows = [
        ("a1", 11000001, 50000001, "AP", 21500101, "110000"),
        ("b1", 11000002, 50000010, "AP", 21500101, "120000"),
    ]
    meta = read_cxr_metadata(metadata(tmp_path, rows))
    paired = pair_cxr(stays(), meta, "end")
    root = tmp_path / "reports"
    report = root / cxr_report_path(11000001, 50000001)
    report.parent.mkdir(parents=True)
    report.write_text(" FINDINGS: clear.\n")
    empty = root / cxr_report_path(11000002, 50000010)
    empty.parent.mkdir(parents=True)
    empty.write_text("")
    out = attach_reports(paired, root)
    assert out["has_rep"].to_list() == [True, False, False]
    assert out["rep_path"].to_list() == ["files/p11/p11000001/s50000001.txt", None, None]
    assert attach_reports(paired, None)["has_rep"].to_list() == [False, False, False]


def test_malformed_metadata_is_named(tmp_path):
    bad = metadata(tmp_path, [("a1", 11000001, 50000001, "AP", 21501301, "110000")])  # month 13
    with pytest.raises(ValueError, match=r"unparseable StudyDate/StudyTime, e\.g\. dicom_id a1"):
        read_cxr_metadata(bad)
    (tmp_path / "m.csv").write_text("dicom_id,subject_id\nx,1\n")
    with pytest.raises(ValueError, match=r"m\.csv: missing column"):
        read_cxr_metadata(tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError):
        read_cxr_metadata(tmp_path / "nowhere")
