"""MIMIC cohort rules on a constructed mini-hospital (both MIMIC-IV layouts) and malformed inputs.

The mini-hospital (``mini_hospital`` in tests/helpers.py, also used by the EHR tests) has one ICU stay
per rule.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from omnifuse.cohorts.build import CohortOptions, DatasetSources, build_cohort
from omnifuse.cohorts.mimic import open_source
from omnifuse.cohorts.mimic.stays import label_column
from omnifuse.cohorts.mimic.tables import SourceError
from omnifuse.formats.cohort import read_cohort, write_cohort
from tests.helpers import mini_hospital


def sources(root: Path, modalities=("ehr",)) -> DatasetSources:
    return DatasetSources("mini", "mimic", tuple(modalities), "mimic-iv", str(root))


@pytest.fixture(scope="module")
def hospital(tmp_path_factory) -> Path:
    return mini_hospital(tmp_path_factory.mktemp("mini") / "mimic-iv")


OPTS = CohortOptions(n_folds=2, seed=0)


def test_ihm_rules_keep_exactly_the_eligible_stays_and_label_deaths_inside_the_admission(hospital, tmp_path):
    frame, meta = build_cohort(sources(hospital), "ihm", OPTS)
    labels = dict(zip(frame["stay_id"].to_list(), frame["y_ihm"].to_list(), strict=True))
    assert labels == {101: 0, 107: 0, 108: 1, 109: 1, 110: 0, 111: 0, 113: 0}
    assert meta.kind == "binary" and meta.label_columns == ("y_ihm",)
    assert frame["sample_id"].to_list() == [str(s) for s in frame["stay_id"].to_list()]
    assert frame["patient_id"].to_list() == [str(s) for s in frame["subject_id"].to_list()]
    excl = meta.extra["exclusions"]
    assert (excl["transfer"], excl["multi_stay_admission"], excl["age"]) == (2, 2, 1)
    assert excl["shorter_than_ihm_hours"] == 1
    # window of the in-hospital mortality task: 48 h from intime
    assert (frame["window_end"] - frame["intime"]).dt.total_hours().unique().to_list() == [48]
    write_cohort(tmp_path / "ihm.parquet", frame, meta)
    back, meta2 = read_cohort(tmp_path / "ihm.parquet")
    assert meta2 == meta and back.height == 7


def test_pheno_keeps_short_stays_and_labels_icd9_and_icd10(hospital):
    frame, meta = build_cohort(sources(hospital), "pheno", OPTS)
    assert 106 in frame["stay_id"].to_list()  # 30 h stay: phenotyping only
    assert meta.kind == "multilabel" and len(meta.label_columns) == 25
    row = {r["stay_id"]: r for r in frame.iter_rows(named=True)}
    htn = label_column("Essential hypertension")
    assert row[101][htn] == 1 and row[107][htn] == 1  # ICD-9 4019 and ICD-10 I10
    assert row[101][label_column("Acute and unspecified renal failure")] == 1
    assert row[106][label_column("Diabetes mellitus without complication")] == 1  # "E11.9" -> E119
    assert row[108][label_column("Cardiac dysrhythmias")] == 1
    assert sum(row[110][c] for c in meta.label_columns) == 0
    assert (frame["window_end"] == frame["outtime"]).all()


def test_has_ehr_and_require_ehr(hospital):
    frame, _ = build_cohort(sources(hospital), "ihm", OPTS)
    has = dict(zip(frame["stay_id"].to_list(), frame["has_ehr"].to_list(), strict=True))
    assert has[109] is False and all(v for k, v in has.items() if k != 109)
    strict, meta = build_cohort(sources(hospital), "ihm", CohortOptions(n_folds=2, require_ehr=True))
    assert 109 not in strict["stay_id"].to_list() and meta.extra["exclusions"]["no_ehr_events"] == 1


def test_patients_keep_one_fold(hospital):
    frame, _ = build_cohort(sources(hospital), "pheno", OPTS)
    folds = frame.filter(pl.col("subject_id") == 9)["fold"].unique()
    assert folds.len() == 1


def test_v1_and_v2_layouts_give_identical_cohorts(tmp_path):
    out = {}
    for layout in ("v1", "v2"):
        root = mini_hospital(tmp_path / layout / "mimic-iv", layout)
        source = open_source(root)
        assert source.layout == layout
        for task in ("ihm", "pheno"):
            frame, meta = build_cohort(sources(root), task, OPTS)
            out[(layout, task)] = (frame, meta.label_columns, meta.extra["exclusions"])
    for task in ("ihm", "pheno"):
        v1, v2 = out[("v1", task)], out[("v2", task)]
        assert v1[0].equals(v2[0]) and v1[1:] == v2[1:]


def test_age_rule_admission_shifts_anchor_age(tmp_path):
    root = mini_hospital(tmp_path / "mimic-iv")
    # patient 4 is 17 in the anchor year 2150; stays are in 2150 too, so both rules agree here
    a, _ = build_cohort(sources(root), "ihm", CohortOptions(n_folds=2, age="admission"))
    b, _ = build_cohort(sources(root), "ihm", OPTS)
    assert a["stay_id"].to_list() == b["stay_id"].to_list()
    c, _ = build_cohort(sources(root), "ihm", CohortOptions(n_folds=2, min_age=61))
    assert set(c["stay_id"].to_list()) == {107, 108, 109}


def test_switches_turn_rules_off(hospital):
    frame, _ = build_cohort(
        sources(hospital),
        "pheno",
        CohortOptions(n_folds=2, exclude_transfers=False, single_stay_admissions=False),
    )
    assert {102, 103, 104, 112}.issubset(set(frame["stay_id"].to_list()))


def _rewrite(root: Path, rel: str, transform) -> None:
    path = root / rel
    with gzip.open(path, "rt") as f:
        text = f.read()
    with gzip.open(path, "wt") as f:
        f.write(transform(text))


@pytest.mark.parametrize(
    ("rel", "transform", "message"),
    [
        ("icu/icustays.csv.gz", lambda t: t.replace(",outtime,", ",out_time,"),
         r"icustays.csv.gz: missing column\(s\) \['outtime'\]"),
        ("hosp/admissions.csv.gz", lambda t: t.replace("2150-01-01 18:00:00", "2150-13-01 18:00:00"),
         r"admissions.csv.gz: unparseable time in column 'admittime' \(hadm_id 11\): '2150-13-01 18:00:00'"),
        ("icu/icustays.csv.gz", lambda t: t.replace(",102,", ",101,"), "duplicate ICU stay id 101"),
        ("icu/chartevents.csv.gz", lambda t: t.replace(",220045,", ",HR,", 1),
         r"chartevents.csv.gz: cannot read events .*`HR`"),
        ("icu/chartevents.csv.gz", lambda t: t.replace("2150-01-02 01:00:00", "2150-01-02 25:00:00", 1),
         r"chartevents.csv.gz: cannot read events .*charttime"),
    ],
)  # fmt: skip
def test_malformed_inputs_give_clear_errors(tmp_path, rel, transform, message):
    root = mini_hospital(tmp_path / "mimic-iv")
    _rewrite(root, rel, transform)
    with pytest.raises(SourceError, match=message):
        build_cohort(sources(root), "ihm", OPTS)


def test_missing_tables_are_named(tmp_path):
    root = mini_hospital(tmp_path / "mimic-iv")
    (root / "icu" / "chartevents.csv.gz").unlink()
    with pytest.raises(SourceError, match=r"missing table icu/chartevents.csv\[.gz\]"):
        open_source(root)
    with pytest.raises(SourceError, match=r"expected hosp/patients.csv\[.gz\] \(v2.x\) or core/patients"):
        open_source(tmp_path, "mimic-iv")


def test_manifest_cohort(tmp_path):
    (tmp_path / "p1").mkdir()
    (tmp_path / "p1" / "ct.nii.gz").write_bytes(b"x")
    (tmp_path / "p2").mkdir()
    (tmp_path / "p2" / "ct.nii.gz").write_bytes(b"x")
    rows = ["patient_id,label,ct,rep", "A,L2,p1/ct.nii.gz,", "B,L1,p2/ct.nii.gz,missing.txt",
            "C,L3,,", "D,L1,p1/ct.nii.gz,"]  # fmt: skip
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    src = DatasetSources(
        "lung", "manifest", ("ct", "rep"), manifest=str(manifest), classes=("L1", "L2", "L3")
    )
    frame, meta = build_cohort(src, "subtype", OPTS)
    assert meta.kind == "multiclass" and meta.label_names == ("L1", "L2", "L3")
    assert frame["sample_id"].to_list() == ["A", "B", "C", "D"] == frame["patient_id"].to_list()
    assert frame["y_subtype"].to_list() == [1, 0, 2, 0]
    assert frame["has_ct"].to_list() == [True, True, False, True]
    assert frame["has_rep"].to_list() == [False, False, False, False]  # missing.txt does not exist
    assert frame["rep_path"].to_list() == [None, "missing.txt", None, None]
    manifest.write_text("\n".join([*rows, "E,L4,p1/ct.nii.gz,"]) + "\n")
    with pytest.raises(ValueError, match=r"patient 'E' has label 'L4', not one of the classes"):
        build_cohort(src, "subtype", OPTS)
    manifest.write_text("\n".join([*rows, "A,L1,,"]) + "\n")
    with pytest.raises(ValueError, match="patient 'A' is listed more than once"):
        build_cohort(src, "subtype", OPTS)


def test_manifest_regions_of_interest(tmp_path):
    (tmp_path / "p1").mkdir()
    (tmp_path / "p1" / "ct.nii.gz").write_bytes(b"x")
    header = "patient_id,label,ct,pet,roi_lps_mm,roi_ras_mm,ct_roi_vox"
    rows = [header, 'A,L2,p1/ct.nii.gz,,"-80.5, 12, -30 -60.5, 32, -10",,',
            "B,L1,p1/ct.nii.gz,,,10 20 30,", "C,L3,,,,,[4 5 6]", "D,L1,p1/ct.nii.gz,,,,"]  # fmt: skip
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    src = DatasetSources(
        "lung", "manifest", ("ct", "pet"), manifest=str(manifest), classes=("L1", "L2", "L3")
    )
    frame, _ = build_cohort(src, "subtype", OPTS)
    assert frame["roi_lps_mm"].to_list() == [
        [-80.5, 12.0, -30.0, -60.5, 32.0, -10.0],
        [-10.0, -20.0, 30.0, -10.0, -20.0, 30.0],  # RAS point (10, 20, 30) -> LPS (-10, -20, 30)
        None,
        None,
    ]
    assert frame["ct_roi_vox"].to_list() == [None, None, [4.0, 5.0, 6.0] * 2, None]
    assert "roi_ras_mm" not in frame.columns
    for bad, message in (
        ("E,L1,,,1 2,,", r"line 6 \(patient 'E'\), column roi_lps_mm: expected 3 numbers"),
        ("E,L1,,,a b c,,", r"line 6 \(patient 'E'\), column roi_lps_mm: expected numbers"),
        ("E,L1,,,,,1 2 inf", r"column ct_roi_vox: expected finite numbers"),
        ("E,L1,,,1 2 3,1 2 3,", r"line 6 \(patient 'E'\) fills both roi_lps_mm and roi_ras_mm"),
    ):
        manifest.write_text("\n".join([*rows, bad]) + "\n")
        with pytest.raises(ValueError, match=message):
            build_cohort(src, "subtype", OPTS)
    manifest.write_text("\n".join(rows).replace("ct_roi_vox", "pet_roi_vox") + "\n")
    ct_only = DatasetSources("lung", "manifest", ("ct",), manifest=str(manifest), classes=("L1", "L2", "L3"))
    with pytest.raises(ValueError, match="column pet_roi_vox names modality 'pet'"):
        build_cohort(ct_only, "subtype", OPTS)
