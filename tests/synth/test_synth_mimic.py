"""`omnifuse synth mimic`: layouts, columns, determinism and cross-table invariants."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
from PIL import Image

from omnifuse.cli import main
from omnifuse.cohorts.mimic.schema import (
    CXR_METADATA,
    CXR_METADATA_COLUMNS,
    CXR_SPLIT,
    CXR_SPLIT_COLUMNS,
    MIMIC_IV_V1,
    MIMIC_IV_V2,
    cxr_report_path,
)
from omnifuse.cohorts.phenotypes import load_phenotypes
from omnifuse.synth.mimic import (
    CXR_LATENT,
    EHR_LATENT,
    REP_LATENT,
    MimicSynthConfig,
    generate_mimic,
    latent_views,
)
from omnifuse.synth.population import PHENOTYPE_KEYS
from tests.helpers import tree_digest

SMALL = MimicSynthConfig(n_stays=40, seed=7, image_columns=64)

# Expected polars dtypes when the files are read with full schema inference (times as strings).
DTYPES = {
    "subject_id": pl.Int64, "hadm_id": pl.Int64, "stay_id": pl.Int64, "itemid": pl.Int64,
    "anchor_age": pl.Int64, "anchor_year": pl.Int64, "seq_num": pl.Int64, "icd_version": pl.Int64,
    "hospital_expire_flag": pl.Int64, "labevent_id": pl.Int64, "specimen_id": pl.Int64,
    "los": pl.Float64, "valuenum": pl.Float64, "ref_range_lower": pl.Float64, "ref_range_upper": pl.Float64,
    "warning": pl.Int64, "caregiver_id": pl.Int64, "icd_code": pl.String,
    "study_id": pl.Int64, "Rows": pl.Int64, "Columns": pl.Int64, "StudyDate": pl.Int64,
    "StudyTime": pl.Float64, "dicom_id": pl.String, "ViewPosition": pl.String,
}  # fmt: skip
TIME_COLUMNS = {"admittime", "dischtime", "deathtime", "edregtime", "edouttime", "intime", "outtime",
                "charttime", "storetime"}  # fmt: skip


def read(path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema_length=None, schema_overrides={"icd_code": pl.String})


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "mimic"
    summary = generate_mimic(out, SMALL, workers=1)
    return out, summary


@pytest.fixture(scope="module")
def tables(hospital):
    root = hospital[0] / "mimic-iv"
    return {name: read(root / f"{name}.csv.gz") for name in MIMIC_IV_V2}


def test_same_seed_gives_byte_identical_files_with_any_worker_count(hospital, tmp_path):
    again = tmp_path / "again"
    generate_mimic(again, SMALL, workers=2)
    assert tree_digest(again) == tree_digest(hospital[0])
    other = tmp_path / "other"
    generate_mimic(other, dataclasses.replace(SMALL, seed=8), workers=1)
    first, second = tree_digest(hospital[0]), tree_digest(other)
    assert first["mimic-iv/icu/chartevents.csv.gz"] != second["mimic-iv/icu/chartevents.csv.gz"]
    assert first["mimic-iv/hosp/patients.csv.gz"] != second["mimic-iv/hosp/patients.csv.gz"]


def test_every_table_has_the_real_columns_and_dtypes(tables, hospital):
    for name, frame in tables.items():
        assert tuple(frame.columns) == MIMIC_IV_V2[name], name
        assert frame.height > 0, name
        for col, dtype in frame.schema.items():
            if col in DTYPES and frame[col].null_count() < frame.height:
                assert dtype == DTYPES[col], (name, col, dtype)
            if col in TIME_COLUMNS:
                parsed = frame[col].str.strptime(pl.Datetime, "%Y-%m-%d %H:%M:%S", strict=True)
                assert parsed.null_count() == frame[col].null_count(), (name, col)
    meta = read(hospital[0] / "mimic-cxr-jpg" / CXR_METADATA)
    assert tuple(meta.columns) == CXR_METADATA_COLUMNS
    for col, dtype in meta.schema.items():
        if col in DTYPES:
            assert dtype == DTYPES[col], col
    assert tuple(read(hospital[0] / "mimic-cxr-jpg" / CXR_SPLIT).columns) == CXR_SPLIT_COLUMNS
    assert (
        tables["patients" if "patients" in tables else "hosp/patients"].height
        == hospital[1]["counts"]["patients"]
    )


def test_stays_sit_inside_their_admissions_and_deaths_are_consistent(tables):
    adm = tables["hosp/admissions"].with_columns(
        pl.col(c).str.to_datetime() for c in ("admittime", "dischtime", "deathtime")
    )
    st = tables["icu/icustays"].with_columns(pl.col(c).str.to_datetime() for c in ("intime", "outtime"))
    pat = tables["hosp/patients"].with_columns(pl.col("dod").str.to_date())
    assert st.height == SMALL.n_stays
    assert st["stay_id"].n_unique() == st.height and adm["hadm_id"].n_unique() == adm.height
    joined = st.join(adm, on=["subject_id", "hadm_id"], how="left", validate="m:1")
    assert joined["admittime"].null_count() == 0
    assert (joined["intime"] >= joined["admittime"]).all() and (
        joined["outtime"] <= joined["dischtime"]
    ).all()
    assert (
        (joined["outtime"] - joined["intime"]).dt.total_seconds() / 86400 - joined["los"]
    ).abs().max() < 1e-6
    # deathtime <-> flag <-> discharge location <-> dod, and nothing after a death
    died = adm["hospital_expire_flag"] == 1
    assert (died == adm["deathtime"].is_not_null()).all()
    assert (died == (adm["discharge_location"] == "DIED")).all()
    dead = adm.filter(died).join(pat, on="subject_id")
    assert (dead["dod"] == dead["deathtime"].dt.date()).all()
    assert (dead["deathtime"] == dead["dischtime"]).all()
    last = adm.group_by("subject_id").agg(pl.col("dischtime").max().alias("last"))
    with_dod = pat.filter(pl.col("dod").is_not_null()).join(last, on="subject_id")
    assert (with_dod["dod"] >= with_dod["last"].dt.date()).all()
    # every charted event belongs to an ICU stay of the same subject and admission
    ce = tables["icu/chartevents"].select("subject_id", "hadm_id", "stay_id").unique()
    assert ce.join(st, on=["subject_id", "hadm_id", "stay_id"], how="anti").height == 0
    # labs without hadm_id are outpatient labs, outside every admission of the subject
    lab = tables["hosp/labevents"].with_columns(pl.col("charttime").str.to_datetime())
    out = lab.filter(pl.col("hadm_id").is_null()).join(adm, on="subject_id")
    inside = out.filter(
        (pl.col("charttime") >= pl.col("admittime")) & (pl.col("charttime") <= pl.col("dischtime"))
    )
    assert inside.height == 0
    assert lab["labevent_id"].n_unique() == lab.height


def test_items_units_and_text_values_follow_mimic_iv(tables):
    ce = tables["icu/chartevents"]
    d_items = tables["icu/d_items"]
    assert ce.join(d_items, on="itemid", how="anti").height == 0
    units = dict(
        ce.filter(pl.col("valuenum").is_not_null())
        .group_by("itemid")
        .agg(pl.col("valueuom").first())
        .iter_rows()
    )
    assert (
        units[223761] == "°F" and units[223762] == "°C" and units[226531] == "lbs" and units[226707] == "Inch"
    )
    gcs_eye = set(ce.filter(pl.col("itemid") == 220739)["value"].unique())
    assert gcs_eye <= {"Spontaneously", "To Speech", "To Pain", "None"} and gcs_eye
    refill = ce.filter(pl.col("itemid").is_in([223951, 224308]))
    assert set(refill["value"].unique()) <= {"Normal <3 Seconds", "Abnormal >3 Seconds"}
    assert refill["valuenum"].null_count() == refill.height
    numeric = ce.filter(pl.col("itemid") == 220045)
    assert (numeric["value"].cast(pl.Float64) == numeric["valuenum"]).all()
    assert not numeric["value"].str.ends_with(".0").any()  # integers are written as in MIMIC


def test_diagnoses_encode_exactly_the_ground_truth_phenotypes(tables, hospital):
    groups = load_phenotypes()
    code_group = {(c, v): g.name for g in groups for v in (9, 10) for c in g.codes_for(v)}
    dx = tables["hosp/diagnoses_icd"]
    truth = pl.read_parquet(hospital[0] / "ground_truth.parquet")
    st = tables["icu/icustays"]
    single = st.group_by("hadm_id").len().filter(pl.col("len") == 1)["hadm_id"]
    rows = dx.filter(pl.col("hadm_id").is_in(single.implode()))
    coded: dict[int, set[str]] = {}
    for hadm, code, version in rows.select("hadm_id", "icd_code", "icd_version").iter_rows():
        if (code, version) in code_group:
            coded.setdefault(hadm, set()).add(code_group[(code, version)])
    key_of = {name: key for name, key in PHENOTYPE_KEYS.items()}
    for row in truth.filter(pl.col("hadm_id").is_in(single.implode())).iter_rows(named=True):
        expected = {name for name in key_of if row[f"pheno_{key_of[name]}"]}
        assert coded.get(row["hadm_id"], set()) == expected, row["hadm_id"]
    assert dx.join(tables["hosp/d_icd_diagnoses"], on=["icd_code", "icd_version"], how="anti").height == 0
    assert set(dx.group_by("hadm_id").agg(pl.col("seq_num").max() == pl.len())["seq_num"]) == {True}


def test_cxr_files_metadata_and_reports_agree(hospital):
    root = hospital[0]
    meta = read(root / "mimic-cxr-jpg" / CXR_METADATA)
    assert meta["dicom_id"].n_unique() == meta.height
    assert meta["dicom_id"].str.contains(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$").all()
    assert set(meta["ViewPosition"].unique()) <= {"AP", "PA", "LATERAL"}
    for row in meta.iter_rows(named=True):
        sid = str(row["subject_id"])
        path = (
            root
            / "mimic-cxr-jpg"
            / "files"
            / f"p{sid[:2]}"
            / f"p{sid}"
            / f"s{row['study_id']}"
            / f"{row['dicom_id']}.jpg"
        )
        with Image.open(path) as img:
            assert img.size == (row["Columns"], row["Rows"]) and img.mode == "L"
        assert (root / "mimic-cxr-reports" / cxr_report_path(row["subject_id"], row["study_id"])).is_file()
    # StudyDate + zero-padded StudyTime parse to real times
    stamp = meta["StudyDate"].cast(pl.String) + meta["StudyTime"].cast(pl.String).str.split(
        "."
    ).list.first().str.zfill(6)
    parsed = stamp.str.strptime(pl.Datetime, "%Y%m%d%H%M%S", strict=True)
    assert parsed.null_count() == 0
    split = read(root / "mimic-cxr-jpg" / CXR_SPLIT)
    assert set(split["dicom_id"]) == set(meta["dicom_id"])
    assert split.group_by("subject_id").agg(pl.col("split").n_unique())["split"].max() == 1
    counts = hospital[1]["cxr"]
    assert counts["images"] == meta.height and counts["studies"] == meta["study_id"].n_unique()


def test_v1_layout_has_core_tables_and_ethnicity(tmp_path, tables):
    out = tmp_path / "v1"
    generate_mimic(out, dataclasses.replace(SMALL, layout="v1", with_cxr=False))
    root = out / "mimic-iv"
    for name, columns in MIMIC_IV_V1.items():
        frame = read(root / f"{name}.csv.gz")
        assert tuple(frame.columns) == columns, name
    assert not (root / "hosp" / "patients.csv.gz").exists()
    v1 = read(root / "icu" / "icustays.csv.gz")
    assert v1.equals(tables["icu/icustays"])  # same hospital, other layout
    assert "ethnicity" in read(root / "core" / "admissions.csv.gz").columns
    assert not (out / "mimic-cxr-jpg").exists()


def test_demo_size_signal_prevalence_and_exclusions(tmp_path):
    """At the default demo size: mortality 10-15 % in the IHM cohort, exclusions present, EHR informative."""
    out = tmp_path / "demo"
    generate_mimic(out, MimicSynthConfig(n_stays=2000, with_cxr=False))
    root = out / "mimic-iv"
    st = read(root / "icu/icustays.csv.gz")
    adm = read(root / "hosp/admissions.csv.gz")
    pat = read(root / "hosp/patients.csv.gz")
    n_per_adm = st.group_by("hadm_id").len()
    cohort = (
        st.join(adm, on=["subject_id", "hadm_id"]).join(pat, on="subject_id").join(n_per_adm, on="hadm_id")
        .filter((pl.col("first_careunit") == pl.col("last_careunit")) & (pl.col("len") == 1)
                & (pl.col("anchor_age") >= 18) & (pl.col("los") >= 2))
    )  # fmt: skip
    assert 700 < cohort.height < 1400
    assert 0.10 <= cohort["hospital_expire_flag"].mean() <= 0.16
    assert (st["first_careunit"] != st["last_careunit"]).sum() > 50
    assert (n_per_adm["len"] > 1).sum() > 30
    assert (pat["anchor_age"] < 18).sum() > 0
    hr = (
        pl.scan_csv(root / "icu/chartevents.csv.gz")
        .filter(pl.col("itemid") == 220045)
        .group_by("stay_id")
        .agg(pl.col("valuenum").mean())
        .collect()
    )
    d = cohort.join(hr, on="stay_id")
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(d["hospital_expire_flag"], d["valuenum"]) > 0.65


def test_cli_writes_and_refuses_to_clobber(tmp_path, caplog):
    out = tmp_path / "cli"
    args = [
        "synth",
        "mimic",
        "--out",
        str(out),
        "--n-stays",
        "12",
        "--seed",
        "3",
        "--no-with-cxr",
        "--workers",
        "1",
    ]
    assert main(args) == 0
    assert (out / "mimic-iv" / "icu" / "icustays.csv.gz").is_file()
    assert main(args) == 2  # exists, no --overwrite
    assert "exists and is not empty" in caplog.text
    assert main([*args, "--overwrite"]) == 0
    assert main(["synth", "mimic", "--out", str(tmp_path / "x"), "--mortality", "1.5"]) == 2
    assert "mortality must be" in caplog.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_stays", 0),
        ("layout", "v3"),
        ("cxr_availability", 1.2),
        ("ehr_signal", -1.0),
        ("image_columns", 8),
        ("filler_ratio", -1.0),
    ],
)
def test_invalid_options_name_the_option(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(SMALL, **{field: value})


def test_ground_truth_matches_tables(hospital, tables):
    truth = pl.read_parquet(hospital[0] / "ground_truth.parquet")
    st = tables["icu/icustays"]
    assert set(truth["stay_id"]) == set(st["stay_id"])
    adm = tables["hosp/admissions"].select("hadm_id", "hospital_expire_flag")
    j = truth.join(adm, on="hadm_id")
    assert (j["in_hospital_death"] == (j["hospital_expire_flag"] == 1)).all()
    assert np.isfinite(truth["severity"].to_numpy()).all()


def test_filler_rows_follow_the_ratio_and_change_no_extracted_event(hospital, tmp_path):
    """--filler-ratio adds rows of items that feed no variable (deterministically); without it the
    hospital is the one of the fixture, and the EHR extraction reads the same events either way."""
    from omnifuse.cohorts.ehr.events import extract_events
    from omnifuse.cohorts.ehr.options import EventOptions
    from omnifuse.cohorts.mimic import open_source
    from omnifuse.synth import mimic_items as mi

    plain = dataclasses.replace(SMALL, with_cxr=False)
    filled = dataclasses.replace(plain, filler_ratio=5.07)
    generate_mimic(tmp_path / "plain", plain, workers=1)
    generate_mimic(tmp_path / "filled", filled, workers=1)
    generate_mimic(tmp_path / "again", filled, workers=2)
    assert tree_digest(tmp_path / "again") == tree_digest(tmp_path / "filled")
    fixture, without = tree_digest(hospital[0]), tree_digest(tmp_path / "plain")
    assert all(fixture[name] == digest for name, digest in without.items() if name.startswith("mimic-iv/"))
    digest = tree_digest(tmp_path / "filled")
    changed = {name for name, value in without.items() if digest.get(name) != value}
    assert changed == {"mimic-iv/icu/chartevents.csv.gz", "mimic-iv/icu/d_items.csv.gz", "synth_info.json"}

    chart = pl.read_csv(tmp_path / "filled/mimic-iv/icu/chartevents.csv.gz", infer_schema=False)
    feeding = {it.itemid for it in mi.ITEMS if it.linksto == "chartevents" and it.variable}
    is_feeding = chart["itemid"].cast(pl.Int64).is_in(list(feeding))
    assert (~is_feeding).sum() / is_feeding.sum() == pytest.approx(5.07, abs=0.01)
    d_items = pl.read_csv(tmp_path / "filled/mimic-iv/icu/d_items.csv.gz", infer_schema=False)
    assert set(chart["itemid"].cast(pl.Int64)) <= set(d_items["itemid"].cast(pl.Int64))
    assert d_items["itemid"].is_unique().all()

    events = {}
    for name in ("plain", "filled"):
        events[name], summary = extract_events(open_source(tmp_path / name / "mimic-iv"), EventOptions())
        events[name + " unknown"] = summary["rows_unknown_item"]
    assert events["plain"].equals(events["filled"])
    assert events["filled unknown"] - events["plain unknown"] == int((~is_feeding).sum()) - int(
        (~pl.read_csv(tmp_path / "plain/mimic-iv/icu/chartevents.csv.gz", infer_schema=False)["itemid"]
         .cast(pl.Int64).is_in(list(feeding))).sum()
    )  # fmt: skip


def test_latent_views_one_row_per_stay_with_the_documented_columns(hospital):
    root = hospital[0]
    views = latent_views(root)
    assert set(views) == {"ehr", "cxr", "rep"}
    stays = read(root / "mimic-iv" / "icu" / "icustays.csv.gz")["stay_id"].cast(pl.String)
    for name, columns in (("ehr", EHR_LATENT), ("cxr", CXR_LATENT), ("rep", REP_LATENT)):
        frame = views[name]
        assert frame.columns == ["sample_id", *columns], name
        assert frame["sample_id"].dtype == pl.String
        assert frame["sample_id"].n_unique() == frame.height == SMALL.n_stays
        assert set(frame["sample_id"]) == set(stays)
        values = frame.drop("sample_id").to_numpy()
        assert np.isfinite(values).all()
    for name in ("cxr", "rep"):
        findings = views[name].drop("sample_id").to_numpy()
        assert ((findings >= 0) & (findings <= 1)).all()
    no_cxr = hospital[0].parent / "no-cxr"
    generate_mimic(no_cxr, dataclasses.replace(SMALL, with_cxr=False))
    assert set(latent_views(no_cxr)) == {"ehr"}


def test_ehr_levels_in_the_ground_truth_are_the_charted_levels(hospital, tables):
    """The per-stay heart-rate level of the latent view is what the chart fluctuates around."""
    views = latent_views(hospital[0])
    charted = (
        tables["icu/chartevents"]
        .filter(pl.col("itemid") == 220045, pl.col("valuenum").is_between(25, 220))
        .group_by("stay_id")
        .agg(pl.col("valuenum").median().alias("charted"), pl.len())
        .filter(pl.col("len") >= 24)
        .with_columns(pl.col("stay_id").cast(pl.String).alias("sample_id"))
        .join(views["ehr"], on="sample_id")
    )
    assert charted.height > 10
    assert np.corrcoef(charted["charted"], charted["level_hr"])[0, 1] > 0.8


def test_lung_injury_drives_diffuse_opacities_and_mortality():
    """The chest films carry mortality signal: the extent of diffuse bilateral opacities follows the
    stay's latent lung injury, which is part of the severity that in-hospital death follows."""
    from sklearn.metrics import roc_auc_score

    from omnifuse.synth.mimic_cxr import CxrOptions, stay_cxr
    from omnifuse.synth.population import PopulationOptions, build_population

    pop = build_population(PopulationOptions(4000, 3, 0.12, 0.08, 0.07, 0.01), load_phenotypes(None))
    opts = CxrOptions(3, 1.0, 0.7, 0.2, 0.15, 0.03, 0.1, 64)
    diffuse = np.array([stay_cxr(pop, s, opts).findings.diffuse for s in range(pop.n_stays)])
    injury = pop.stays["lung_injury"]
    assert 0.3 < (diffuse > 0).mean() < 0.7
    assert np.corrcoef(diffuse, injury)[0, 1] > 0.8
    died = pop.admissions["hospital_expire_flag"][pop.stays["admission_index"]] == 1
    assert roc_auc_score(died, diffuse) > 0.7
    # without signal the films no longer follow the latent state
    flat = dataclasses.replace(opts, cxr_signal=0.0)
    diffuse0 = np.array([stay_cxr(pop, s, flat).findings.diffuse for s in range(pop.n_stays)])
    assert abs(roc_auc_score(died, diffuse0) - 0.5) < 0.06
