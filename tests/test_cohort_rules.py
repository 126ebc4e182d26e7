"""MIMIC cohort rules on a constructed mini-hospital (both MIMIC-IV layouts) and malformed inputs.

The mini-hospital (``mini_hospital``) is also used by the EHR tests: one ICU stay per rule.
"""

from __future__ import annotations

import csv
import gzip
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from omnifuse.cohort import read_cohort, write_cohort
from omnifuse.data.cohorts import CohortOptions, DatasetSources, build_cohort
from omnifuse.data.mimic import open_source
from omnifuse.data.mimic.stays import label_column
from omnifuse.data.mimic.tables import SourceError
from omnifuse.data.mimic_schema import MIMIC_IV_LAYOUTS

T0 = datetime(2150, 1, 2)  # intime of most stays


def ts(hours: float, base: datetime = T0) -> str:
    return (base + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")


# subject, hadm, stay, first/last care unit, anchor_age, intime offset (h), los (h), admission death
# time offset (h) or None, dod offset (h from T0) or None
STAYS = [
    (1, 11, 101, "MICU", "MICU", 60, 0, 72, None, None),  # kept, survivor
    (2, 12, 102, "MICU", "SICU", 70, 0, 72, None, None),  # transfer
    (3, 13, 103, "MICU", "MICU", 50, 0, 60, None, None),  # admission with two ICU stays ...
    (3, 13, 104, "MICU", "MICU", 50, 100, 60, None, None),  # ... both excluded
    (4, 14, 105, "MICU", "MICU", 17, 0, 72, None, None),  # minor
    (5, 15, 106, "MICU", "MICU", 40, 0, 30, None, None),  # shorter than 48 h: pheno only
    (6, 16, 107, "MICU", "MICU", 80, 0, 72, None, 24 * 30),  # died a month after discharge: y = 0
    (7, 17, 108, "MICU", "MICU", 65, 0, 72, None, 48),  # dod inside the admission: y = 1
    (8, 18, 109, "MICU", "MICU", 75, 0, 60, 60, 60),  # deathtime inside the admission: y = 1; no events
    (9, 19, 110, "CCU", "CCU", 55, 0, 50, None, None),  # one patient, two admissions ...
    (9, 20, 111, "CCU", "CCU", 55, 24 * 60, 50, None, None),  # ... both kept, same fold
    (10, 21, 112, "MICU", "SICU", 45, 0, 50, None, None),  # transfer stay of a two-stay admission ...
    (10, 21, 113, "SICU", "SICU", 45, 80, 50, None, None),  # ... its other stay is kept (reference order)
]
DIAGNOSES = [(11, "4019", 9), (11, "5849", 9), (16, "I10", 10), (15, "E11.9", 10), (17, "42731", 9)]


def write_table(root: Path, layout: str, table: str, rows: list[dict]) -> None:
    """A MIMIC-IV table with exactly the layout's columns (missing values empty), gzip CSV."""
    columns = MIMIC_IV_LAYOUTS[layout][table]
    path = root / f"{table}.csv.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            out = {c: row.get("race" if c == "ethnicity" else c, "") for c in columns}
            writer.writerow({k: "" if v is None else v for k, v in out.items()})


def default_chart() -> list[dict]:
    """A few charted events per stay (heart rate every 4 h over the first 48 h), none for stay 109."""
    rows = []
    for subject, hadm, stay, *_ in STAYS:
        if stay == 109:
            continue
        intime = T0 + timedelta(hours=next(s[6] for s in STAYS if s[2] == stay))
        for h in range(1, 48, 4):
            rows.append(chart(subject, hadm, stay, ts(h, intime), 220045, 80 + h % 7))
    return rows


def chart(subject, hadm, stay, time, itemid, valuenum=None, value=None, uom=""):
    value = value if value is not None else ("" if valuenum is None else f"{valuenum:g}")
    return dict(
        subject_id=subject, hadm_id=hadm, stay_id=stay, charttime=time, storetime=time, itemid=itemid,
        value=value, valuenum=valuenum, valueuom=uom, warning=0,
    )  # fmt: skip


def lab(subject, hadm, time, itemid, valuenum, value=None):
    return {"labevent_id": 1, "subject_id": subject, "hadm_id": hadm, "specimen_id": 1, "itemid": itemid,
            "charttime": time, "storetime": time, "value": value if value is not None else f"{valuenum:g}",
            "valuenum": valuenum, "valueuom": "", "priority": "ROUTINE"}  # fmt: skip


def mini_hospital(
    root: Path, layout: str = "v2", chart_rows: list[dict] | None = None, lab_rows: list[dict] | None = None
) -> Path:
    """Write the mini-hospital in a MIMIC-IV layout under ``root``; return ``root``."""
    patients, admissions, stays = {}, {}, []
    for subject, hadm, stay, first, last, age, offset, los, death, dod in STAYS:
        intime = T0 + timedelta(hours=offset)
        death_date = None if dod is None else (T0 + timedelta(hours=dod)).strftime("%Y-%m-%d")
        patients[subject] = dict(
            subject_id=subject, gender="F", anchor_age=age, anchor_year=2150, anchor_year_group="2011 - 2013",
            dod=death_date,
        )  # fmt: skip
        adm = admissions.setdefault(hadm, dict(
            subject_id=subject, hadm_id=hadm, admittime=ts(-6, intime), dischtime=ts(los + 24, intime),
            race="WHITE", hospital_expire_flag=0,
        ))  # fmt: skip
        if death is not None:
            adm["deathtime"] = adm["dischtime"] = ts(death, intime)
            adm["hospital_expire_flag"] = 1
        adm["dischtime"] = max(adm["dischtime"], ts(los + 24, intime))
        stays.append({"subject_id": subject, "hadm_id": hadm, "stay_id": stay, "first_careunit": first,
                      "last_careunit": last, "intime": ts(0, intime), "outtime": ts(los, intime),
                      "los": los / 24})  # fmt: skip
    write_table(root, layout, "core/patients" if layout == "v1" else "hosp/patients", list(patients.values()))
    write_table(
        root, layout, "core/admissions" if layout == "v1" else "hosp/admissions", list(admissions.values())
    )
    write_table(root, layout, "icu/icustays", stays)
    write_table(root, layout, "hosp/diagnoses_icd",
                [{"subject_id": next(s[0] for s in STAYS if s[1] == h), "hadm_id": h, "seq_num": 1,
                  "icd_code": c, "icd_version": v} for h, c, v in DIAGNOSES])  # fmt: skip
    write_table(root, layout, "icu/chartevents", default_chart() if chart_rows is None else chart_rows)
    write_table(root, layout, "hosp/labevents", lab_rows or [])
    return root


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
