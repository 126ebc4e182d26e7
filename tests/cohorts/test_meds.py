"""MEDS sources: the real MIMIC-IV demo (skipped without ../shared) and constructed event streams."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from omnifuse.cohorts.build import CohortOptions, DatasetSources, build_cohort
from omnifuse.cohorts.ehr.build import build_ehr_cache
from omnifuse.cohorts.ehr.channels import channel_spec
from omnifuse.cohorts.ehr.events import extract_events_to
from omnifuse.cohorts.ehr.options import DiscretizerOptions, EventOptions
from omnifuse.cohorts.mimic import open_source
from omnifuse.cohorts.mimic.tables import SourceError
from omnifuse.formats.cache import read_cache
from omnifuse.formats.cohort import write_cohort
from tests.helpers import shared_data

SPEC = channel_spec()
T0 = datetime(2150, 3, 1, 8)


@pytest.fixture(scope="module")
def demo():
    return shared_data("mimic-iv-demo-meds", "mimic_iv_demo_meds_events.parquet")


@pytest.fixture(scope="module")
def demo_built(demo, tmp_path_factory):
    """Events, cohorts and caches of both tasks built from the real demo."""
    out = tmp_path_factory.mktemp("demo")
    source = open_source(demo.parent)  # a folder of parquet files is read as MEDS
    summary = extract_events_to(out / "events.parquet", source, EventOptions())
    src = DatasetSources("demo", "mimic", ("ehr",), "meds", str(demo.parent))
    built = {"summary": summary, "source": source}
    for task in ("ihm", "pheno"):
        frame, meta = build_cohort(src, task, CohortOptions(n_folds=2), out / "events.parquet")
        write_cohort(out / f"{task}.parquet", frame, meta)
        build_ehr_cache(
            out / f"{task}.parquet", out / "events.parquet", out / f"{task}.h5", DiscretizerOptions()
        )
        built[task] = (frame, meta, read_cache(out / f"{task}.h5", "ehr"))
    return built


def test_demo_stays_are_rebuilt_from_event_times(demo_built):
    tables = demo_built["source"].tables()
    assert tables.icustays.height == 140  # ICU stays before exclusions (README of the demo)
    assert tables.admissions.height == 275 and tables.patients.height == 100
    assert tables.icustays["hadm_id"].null_count() == 0  # every stay found its admission
    assert tables.admissions["deathtime"].is_not_null().sum() == 15  # HOSPITAL_DISCHARGE//DIED


def test_demo_cohorts(demo_built):
    ihm, _, _ = demo_built["ihm"]
    pheno, pheno_meta, _ = demo_built["pheno"]
    excl = pheno_meta.extra["exclusions"]
    assert excl["icu_stays"] == 140 and 60 < pheno.height < 140
    assert ihm.height < pheno.height and ihm["y_ihm"].sum() >= 1
    assert set(ihm["stay_id"].to_list()) <= set(pheno["stay_id"].to_list())
    assert pheno.select(pheno_meta.label_columns).sum().sum_horizontal().item() > 0  # ICD-9 and -10 codes
    assert ihm["has_ehr"].all()


def test_demo_features_have_plausible_values(demo_built):
    _, _, cache = demo_built["ihm"]
    valid = cache.data[cache.mask & cache.present[:, None]]
    assert cache.data.shape[1:] == (24, 76)
    for name, low, high in [("Heart Rate", 60, 120), ("Systolic blood pressure", 90, 150),
                            ("Oxygen saturation", 90, 100), ("Temperature", 35.5, 38.5),
                            ("Respiratory rate", 12, 28), ("Glucose", 80, 250)]:  # fmt: skip
        column = valid[:, SPEC[name].begin]
        observed = valid[:, SPEC.mask_begin + SPEC[name].index] == 1
        assert low < np.median(column[observed]) < high, name
    # text values were dropped from the MEDS export: capillary refill is never observed
    assert valid[:, SPEC.mask_begin + SPEC["Capillary refill rate"].index].sum() == 0
    summary = demo_built["summary"]
    assert summary["variables"]["Capillary refill rate"]["kept"] == 0
    assert summary["variables"]["Heart Rate"]["kept"] > 5000
    eye = SPEC["Glascow coma scale eye opening"]
    assert valid[:, eye.begin : eye.begin + eye.width].sum(axis=1).max() == 1  # numbers became one-hot


def test_demo_pheno_cache_is_variable_length(demo_built):
    _, _, cache = demo_built["pheno"]
    lengths = cache.mask.sum(axis=1)
    assert lengths.min() >= 1 and lengths.max() == cache.data.shape[1] and len(set(lengths.tolist())) > 10
    assert (cache.data[~cache.mask] == 0).all()


def meds(rows, path):
    frame = pl.DataFrame(
        rows, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                      "numeric_value": pl.Float32}, orient="row",
    )  # fmt: skip
    frame.write_parquet(path)
    return path


def h(hours):
    return T0 + timedelta(hours=hours)


STREAM = [
    (7, h(-24 * 365 * 50), "MEDS_BIRTH", None),
    (7, None, "GENDER//F", None),
    (7, h(-2), "HOSPITAL_ADMISSION//URGENT//TRANSFER FROM HOSPITAL", None),
    (7, h(0), "ICU_ADMISSION//MICU", None),
    (7, h(1), "LAB//220045//bpm", 90.0),
    (7, h(60), "ICU_DISCHARGE//MICU", None),
    (7, h(70), "HOSPITAL_DISCHARGE//DIED", None),
    (7, h(70), "DIAGNOSIS//ICD//9//4019", None),
    (7, h(80), "MEDS_DEATH", None),
]


def test_constructed_stream(tmp_path):
    survivor = [(8, *r[1:]) for r in STREAM if r[2] not in ("MEDS_DEATH",) and not r[2].endswith("DIED")]
    survivor.append((8, h(70), "HOSPITAL_DISCHARGE//HOME", None))
    path = meds(STREAM + survivor, tmp_path / "m.parquet")
    tables = open_source(path).tables()
    stay = tables.icustays.filter(pl.col("subject_id") == 7).row(0, named=True)
    assert stay["stay_id"] == 7001 and stay["hadm_id"] == 7001 and stay["first_careunit"] == "MICU"
    assert tables.admissions.filter(pl.col("subject_id") == 7)["deathtime"][0] == h(70)
    assert tables.diagnoses.filter(pl.col("subject_id") == 7).select(
        "hadm_id", "icd_code", "icd_version"
    ).row(0) == (7001, "4019", 9)
    src = DatasetSources("m", "mimic", ("ehr", "cxr"), "meds", str(path))
    frame, _ = build_cohort(src, "ihm", CohortOptions(n_folds=2))
    assert dict(zip(frame["stay_id"].to_list(), frame["y_ihm"].to_list(), strict=True)) == {7001: 1, 8001: 0}
    assert frame["has_ehr"].all() and not frame["has_cxr"].any()  # no X-ray source configured
    assert frame["age"].to_list() == [49, 49]  # from MEDS_BIRTH (50 * 365 days before)


def test_unmatched_and_missing_columns_are_errors(tmp_path):
    broken = [r for r in STREAM if not r[2].startswith("ICU_DISCHARGE")]
    with pytest.raises(SourceError, match="subject 7 has 1 ICU_ADMISSION but 0 ICU_DISCHARGE events"):
        open_source(meds(broken, tmp_path / "a.parquet")).tables()
    pl.DataFrame({"subject_id": [1], "time": [T0], "kode": ["x"], "numeric_value": [1.0]}).write_parquet(
        tmp_path / "b.parquet"
    )
    with pytest.raises(SourceError, match=r"missing MEDS column\(s\) \['code'\]"):
        open_source(tmp_path / "b.parquet")
    summary_dir = tmp_path / "empty"
    summary_dir.mkdir()
    with pytest.raises(SourceError, match="no parquet files"):
        open_source(summary_dir, "meds")
