"""Helpers shared by the test modules (imported as ``tests.helpers``; conftest.py holds fixtures only).

* where the repository and the real sample data are, and how to skip without the data;
* the workflow runner for tests that run ``python -m snakemake`` on a tiny config in a temp dir;
* builders: a constructed MIMIC-IV mini-hospital (one ICU stay per cohort rule), small synthetic
  cohorts with their cohort tables, and fake run directories written with the real run writers.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from snakemake.utils import validate

from omnifuse.cohorts.cxr_pairing import attach_reports, pair_cxr, read_cxr_metadata
from omnifuse.cohorts.manifest import parse_roi
from omnifuse.cohorts.mimic.schema import MIMIC_IV_LAYOUTS
from omnifuse.formats.cohort import CohortMeta, write_cohort
from omnifuse.formats.run import Run, history_frame, summarize_run, write_json, write_parquet
from omnifuse.synth.lung import LungSynthConfig, generate_lung
from omnifuse.synth.mimic import MimicSynthConfig, generate_mimic
from omnifuse.workflow.checks import check_task_training

# ---- paths and sample data

REPO = Path(__file__).resolve().parents[1]


SHARED_DATA = Path(os.environ.get("OMNIFUSE_SAMPLE_DATA", REPO.parent / "shared" / "data"))


def shared_data(*parts: str) -> Path:
    """Path under the real sample data folder (``OMNIFUSE_SAMPLE_DATA``, default ../shared/data), or skip
    the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample data not available: {path}")
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, keyed by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---- workflow runs

SCHEMAS = REPO / "workflow" / "schemas"


SCHEMA = SCHEMAS / "config.schema.yaml"


TINY = {
    "synthetic": {
        "mimic": {"options": {"n_stays": 30, "seed": 1, "image_columns": 64}},
        "lung": {
            "options": {
                "n_patients": 4,
                "ct_shape": [32, 32, 16],
                "ct_spacing": [7.0, 7.0, 10.0],
                "pet_shape": [16, 16, 8],
                "pet_spacing": [14.0, 14.0, 20.0],
            }
        },
    }
}


def snakemake(workdir, *args, check=True):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir),
           "--cores", "2", *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def planned_jobs(proc) -> dict[str, int]:
    """Job counts from a dry run's 'Job stats' table."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("total", 1)[0]
    counts = {}
    for line in table.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def planned_caches(proc) -> list[str]:
    """``<dataset>/<task>/<modality>`` of every feature-cache job of a dry run (run without
    ``--quiet=rules``): one rule extracts every modality, so the counts alone cannot tell them apart."""
    text = proc.stdout + proc.stderr
    found = re.findall(r"^\s+output: results/([^/\s]+)/features/([^/\s]+)/(\w+)\.h5", text, flags=re.M)
    return sorted(f"{d}/{t}/{m}" for d, t, m in found)


def write_config(workdir, config):
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def validate_config(config: dict) -> dict:
    """What the Snakefile does: top level, each section, each dataset."""
    validate(config, str(SCHEMA))
    for section in config:
        if (SCHEMAS / f"{section}.schema.yaml").is_file():
            validate(config[section], str(SCHEMAS / f"{section}.schema.yaml"))
    for dataset in config["datasets"].values():
        validate(dataset, str(SCHEMAS / "dataset.schema.yaml"))
    check_task_training(config, SCHEMAS)
    return config


# ---- a constructed MIMIC-IV mini-hospital

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


# ---- small synthetic cohorts and their cohort tables

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


# ---- fake run directories for the report tests


def make_run(
    root: Path,
    run: Run,
    auroc: Sequence[float],
    auprc: Sequence[float] | None = None,
    history: Sequence[Sequence[Mapping[str, Any]]] | None = None,
) -> Path:
    """``root/<run.dir>`` with fold{k}/metrics.json (and history.parquet) and summary.json."""
    run_dir = root / run.dir
    auprc = auprc if auprc is not None else [a - 0.2 for a in auroc]
    for k, (a, p) in enumerate(zip(auroc, auprc, strict=True)):
        fold = run_dir / f"fold{k}"
        fold.mkdir(parents=True, exist_ok=True)
        rows = list(history[k]) if history is not None else [{"epoch": 1, "val_auroc": a}]
        write_parquet(fold / "history.parquet", history_frame(rows))
        write_json(
            fold / "metrics.json",
            {"fold": k, "auroc": a, "auprc": p, "method": run.variant, "combo": run.combo},
        )
    summarize_run(run_dir)
    return run_dir
