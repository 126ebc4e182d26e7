"""Stage-0 workflow rules: schemas, config/mimic.yaml, and a tiny run that reruns only what changed."""

from __future__ import annotations

import dataclasses

import h5py
import yaml

from omnifuse.cohorts.build import CohortOptions
from omnifuse.cohorts.ehr.options import DiscretizerOptions, EventOptions
from omnifuse.formats.cohort import read_cohort
from tests.helpers import REPO, SCHEMAS, TINY, planned_jobs, snakemake, validate_config, write_config


def _defaults(cls) -> dict:
    return {
        f.name: (list(f.default) if isinstance(f.default, tuple) else f.default)
        for f in dataclasses.fields(cls)
    }


def test_schema_defaults_are_the_option_defaults():
    cohort = yaml.safe_load((SCHEMAS / "cohort.schema.yaml").read_text())["properties"]
    expected = _defaults(CohortOptions)
    expected["split_files"] = {}  # per dataset in the config, one file per command
    del expected["split_file"]
    assert {k: v["default"] for k, v in cohort.items()} == expected
    ehr = yaml.safe_load((SCHEMAS / "ehr.schema.yaml").read_text())["properties"]
    expected = {**_defaults(EventOptions), **_defaults(DiscretizerOptions), "shard_size": 2048}
    assert {k: v["default"] for k, v in ehr.items()} == expected


def test_mimic_config_validates():
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    real = yaml.safe_load((REPO / "config" / "mimic.yaml").read_text())
    merged = {**demo, **real, "datasets": {**demo["datasets"], **real["datasets"]}}
    merged["datasets"]["lung"] = {**demo["datasets"]["lung"], **real["datasets"]["lung"]}
    config = validate_config(merged)
    assert config["cohort"]["split_files"] == {} and config["ehr"]["timestep"] == 2.0
    assert config["datasets"]["mimic"]["ehr"]["format"] == "mimic-iv"


def tiny_config() -> dict:
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["synthetic"]["lung"]["options"]["n_patients"] = 10  # 5 folds need 5 patients
    config["datasets"] = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["datasets"]
    config["cohort"] = {"n_folds": 3}
    return config


TARGETS = [
    "results/mimic/features/ihm/ehr.h5",
    "results/mimic/features/pheno/ehr.h5",
    "results/lung/cohorts/subtype.parquet",
]


def test_tiny_run_builds_cohorts_and_ehr_caches_and_reruns_only_what_changed(tmp_path):
    config = tiny_config()
    write_config(tmp_path, config)
    planned = planned_jobs(snakemake(tmp_path, "-n", *TARGETS))
    assert planned == {"synth_mimic": 1, "synth_lung": 1, "ehr_events": 1, "cohort": 3, "ehr_features": 2}
    snakemake(tmp_path, *TARGETS)
    for task in ("ihm", "pheno"):
        frame, meta = read_cohort(tmp_path / "results" / "mimic" / "cohorts" / f"{task}.parquet")
        assert meta.modalities == ("ehr", "cxr", "rep") and meta.n_folds == 3
        assert frame["has_cxr"].any() and frame["has_ehr"].all()
        with h5py.File(tmp_path / "results" / "mimic" / "features" / task / "ehr.h5") as f:
            assert f["data"].shape[0] == frame.height and f["data"].shape[2] == 76
        assert (tmp_path / "logs" / "cohort" / "mimic" / f"{task}.log").is_file()
        assert (tmp_path / "benchmarks" / "features" / "mimic" / task / "ehr.tsv").is_file()
    lung, meta = read_cohort(tmp_path / "results" / "lung" / "cohorts" / "subtype.parquet")
    assert (
        meta.kind == "multiclass"
        and lung.height == 10
        and {"ct_path", "pet_path", "rep_path"} <= set(lung.columns)
    )
    assert (tmp_path / "results" / "mimic" / "ehr" / "events.json").is_file()
    assert (tmp_path / "logs" / "ehr" / "mimic" / "events.log").is_file()
    assert planned_jobs(snakemake(tmp_path, "-n", *TARGETS)) == {}
    # a discretizer option reruns the two caches only
    changed = tiny_config()
    changed["ehr"] = {"timestep": 1.0}
    write_config(tmp_path, changed)
    assert planned_jobs(snakemake(tmp_path, "-n", *TARGETS)) == {"ehr_features": 2}
    # a cohort option reruns the cohorts and the caches, not the event extraction
    changed["cohort"]["seed"] = 7
    write_config(tmp_path, changed)
    assert planned_jobs(snakemake(tmp_path, "-n", *TARGETS)) == {"cohort": 3, "ehr_features": 2}
    # an event-cleaning option reruns the extraction and everything after it, not the lung cohort
    changed["ehr"]["drop_outliers"] = False
    write_config(tmp_path, changed)
    assert planned_jobs(snakemake(tmp_path, "-n", *TARGETS)) == {
        "ehr_events": 1, "cohort": 3, "ehr_features": 2,
    }  # fmt: skip
