"""``omnifuse synth mimic``: a synthetic ICU hospital in the MIMIC-IV, MIMIC-CXR-JPG and report layouts.

Output under ``out``::

    mimic-iv/            hosp/ + icu/ (v2.x) or core/ + hosp/ + icu/ (v1.0), gzip CSV with the real columns
    mimic-cxr-jpg/       files/p1x/p1xxxxxxx/s5xxxxxxx/<dicom_id>.jpg, mimic-cxr-2.0.0-{metadata,split}.csv.gz
    mimic-cxr-reports/   files/p1x/p1xxxxxxx/s5xxxxxxx.txt
    ground_truth.parquet per ICU stay: latent severity, ventilation, phenotype labels, death (synthetic only)
    synth_info.json      options, package version and counts

The signal model is described in docs/synthetic_data.md.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

import omnifuse
from omnifuse.cohorts.mimic.schema import CXR_METADATA, CXR_METADATA_COLUMNS, CXR_SPLIT, CXR_SPLIT_COLUMNS
from omnifuse.cohorts.phenotypes import load_phenotypes
from omnifuse.formats.atomic import atomic_dir, gzip_writer, write_text_atomic
from omnifuse.synth.cxr_findings import DEVICES, SEVERITY_FIELDS
from omnifuse.synth.mimic_cxr import (
    VIEW_MEANING,
    CxrOptions,
    ImageTask,
    StayCxr,
    build_studies,
    render_images,
    stay_cxr,
    submit_images,
    wait_images,
)
from omnifuse.synth.mimic_events import DETERIORATION_HOURS, VITALS, vital_levels
from omnifuse.synth.mimic_tables import (
    TIME_FORMAT,
    write_chartevents,
    write_core_tables,
    write_labevents,
)
from omnifuse.synth.population import HOUR, Population, PopulationOptions, build_population
from omnifuse.synth.rng import keyed_rng

log = logging.getLogger(__name__)

LAYOUTS = ("v2", "v1")


@dataclass(frozen=True)
class MimicSynthConfig:
    """Options of the synthetic hospital (each is a CLI flag and a config key)."""

    n_stays: int = 2000  # ICU stays written (before any cohort exclusion)
    seed: int = 0  # random seed: same options and seed give byte-identical files
    layout: str = "v2"  # "v2": MIMIC-IV 2.x (hosp/, race); "v1": MIMIC-IV 1.0 (core/, ethnicity)
    mortality: float = 0.11  # in-hospital mortality of ICU admissions
    ehr_signal: float = 1.0  # how strongly vitals/labs follow the latent state (0 = not at all)
    cxr_signal: float = 1.0  # how strongly X-ray findings follow the latent state
    cxr_availability: float = 0.9  # fraction of stays with a study in [intime, intime + 48 h]
    cxr_artifact_rate: float = 0.2  # fraction of images degraded by heavy artifacts
    report_omission: float = 0.4  # P(a present finding is not reported)
    report_false_positive: float = 0.03  # P(an absent finding is reported)
    no_findings_section_prob: float = 0.1  # reports with IMPRESSION only
    transfer_rate: float = 0.08  # stays whose last care unit differs from the first
    multi_stay_rate: float = 0.07  # ICU admissions with two ICU stays
    minor_rate: float = 0.01  # patients under 18
    charting_error_rate: float = 0.002  # physiologically impossible values on vital items
    # chartevents rows of items that feed no variable, per row of the 17 variables' items (alarms,
    # nursing assessments, ventilator settings); MIMIC-IV: 5.07 (MIMIC_IV_FILLER_RATIO); 0 = off
    filler_ratio: float = 0.0
    image_columns: int = 256  # image width in pixels (height follows the view's aspect)
    with_cxr: bool = True  # write MIMIC-CXR-JPG and reports (False: MIMIC-IV tables only)
    phenotypes: str = ""  # phenotype definition YAML; "" = the demo definitions

    def __post_init__(self) -> None:
        if self.n_stays < 1:
            raise ValueError(f"n_stays must be >= 1, got {self.n_stays}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        for name in (
            "mortality",
            "cxr_availability",
            "cxr_artifact_rate",
            "report_omission",
            "report_false_positive",
            "no_findings_section_prob",
            "transfer_rate",
            "multi_stay_rate",
            "minor_rate",
            "charting_error_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 < self.mortality < 1.0:
            raise ValueError(f"mortality must be strictly between 0 and 1, got {self.mortality}")
        for name in ("ehr_signal", "cxr_signal"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.filler_ratio <= 100.0:
            raise ValueError(f"filler_ratio must be in [0, 100], got {self.filler_ratio}")
        if not 64 <= self.image_columns <= 4096:
            raise ValueError(f"image_columns must be in [64, 4096], got {self.image_columns}")


def generate_mimic(
    out: str | Path,
    cfg: MimicSynthConfig,
    *,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = False,
) -> dict:
    """Write the synthetic hospital under ``out`` (atomically); return the summary (synth_info.json)."""
    groups = load_phenotypes(cfg.phenotypes or None)
    pop = build_population(
        PopulationOptions(
            cfg.n_stays, cfg.seed, cfg.mortality, cfg.transfer_rate, cfg.multi_stay_rate, cfg.minor_rate
        ),
        groups,
    )
    log.info(
        "synthetic hospital: %d patients, %d admissions, %d ICU stays",
        len(pop.patients["subject_id"]),
        len(pop.admissions["hadm_id"]),
        pop.n_stays,
    )
    with atomic_dir(out, overwrite=overwrite) as tmp, ExitStack() as stack:
        summary: dict = {
            "generator": "omnifuse synth mimic",
            "omnifuse_version": omnifuse.__version__,
            # without filler rows (the default), the option is left out: such hospitals keep their bytes
            "options": {k: v for k, v in asdict(cfg).items() if k != "filler_ratio" or cfg.filler_ratio},
        }
        futures: list = []
        stays_cxr: list[StayCxr] = []
        if cfg.with_cxr:
            cxr_opts = CxrOptions(
                cfg.seed,
                cfg.cxr_signal,
                cfg.cxr_availability,
                cfg.cxr_artifact_rate,
                cfg.report_omission,
                cfg.report_false_positive,
                cfg.no_findings_section_prob,
                cfg.image_columns,
            )
            stays_cxr = [stay_cxr(pop, s, cxr_opts) for s in range(pop.n_stays)]
            meta, tasks = build_studies(pop, cxr_opts, tmp / "mimic-cxr-reports", stays_cxr)
            _write_cxr_tables(tmp / "mimic-cxr-jpg", meta, cfg.seed)
            if workers > 1:  # render in the background while the EHR tables are written
                pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers))
                stack.callback(lambda: [f.cancel() for f in futures])
                futures = submit_images(pool, tmp / "mimic-cxr-jpg", cfg.seed, tasks)
            summary["cxr"] = _cxr_counts(meta, tasks)
        root = tmp / "mimic-iv"
        write_core_tables(root, pop, groups, cfg.layout, cfg.seed, filler_items=cfg.filler_ratio > 0)
        n_lab = write_labevents(
            root / "hosp/labevents.csv.gz", pop, cfg.layout, cfg.seed, cfg.ehr_signal, progress
        )
        n_chart = write_chartevents(
            root / "icu/chartevents.csv.gz",
            pop,
            cfg.layout,
            cfg.seed,
            cfg.ehr_signal,
            cfg.charting_error_rate,
            progress,
            cfg.filler_ratio,
            workers,
        )
        if futures:
            wait_images(futures, len(tasks), progress)
        elif cfg.with_cxr:
            render_images(tmp / "mimic-cxr-jpg", cfg.seed, tasks, progress)
        levels = vital_levels(pop, cfg.seed, cfg.ehr_signal)
        _write_ground_truth(tmp / "ground_truth.parquet", pop, stays_cxr, levels)
        summary["counts"] = {
            "patients": len(pop.patients["subject_id"]),
            "admissions": len(pop.admissions["hadm_id"]),
            "icu_stays": pop.n_stays,
            "in_hospital_deaths": int(pop.admissions["hospital_expire_flag"].sum()),
            "chartevents_rows": n_chart,
            "labevents_rows": n_lab,
        }
        write_text_atomic(tmp / "synth_info.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _study_time_columns(seconds: np.ndarray, seed: int) -> tuple[np.ndarray, list[str]]:
    """StudyDate as YYYYMMDD integers and StudyTime as HHMMSS.fff text without leading zeros, as in the
    real metadata (which stores StudyTime as a float, so 08:41:43 reads ``84143.0``)."""
    dt = seconds.astype("datetime64[s]")
    day = dt.astype("datetime64[D]")
    date = np.char.replace(day.astype(str), "-", "").astype(np.int64)
    sod = (dt - day).astype(np.int64)
    ms = keyed_rng(seed, "study-time-ms").integers(0, 1000, len(seconds))
    hhmmss = (sod // 3600) * 10000 + (sod % 3600 // 60) * 100 + sod % 60
    return date, [f"{h}.{m:03d}" for h, m in zip(hhmmss.tolist(), ms.tolist(), strict=True)]


def _write_cxr_tables(root: Path, meta: pl.DataFrame, seed: int) -> None:
    date, time = _study_time_columns(meta["time"].to_numpy(), seed)
    orientation = {"AP": "Recumbent", "PA": "Erect", "LATERAL": "Erect"}
    frame = pl.DataFrame(
        {
            "dicom_id": meta["dicom_id"],
            "subject_id": meta["subject_id"],
            "study_id": meta["study_id"],
            "PerformedProcedureStepDescription": meta["exam"],
            "ViewPosition": meta["view"],
            "Rows": meta["rows"],
            "Columns": meta["cols"],
            "StudyDate": date,
            "StudyTime": time,
            "ProcedureCodeSequence_CodeMeaning": meta["exam"],
            "ViewCodeSequence_CodeMeaning": meta["view"].replace_strict(VIEW_MEANING),
            "PatientOrientationCodeSequence_CodeMeaning": meta["view"].replace_strict(orientation),
        }
    ).select(CXR_METADATA_COLUMNS)
    with gzip_writer(root / CXR_METADATA) as gz:
        gz.write(frame.write_csv(datetime_format=TIME_FORMAT, null_value="").encode("utf-8"))
    # official split: by subject, ~98 % train, 1 % validate, 1 % test
    u = (meta["subject_id"].hash(seed=seed) % 1000).to_numpy()
    split = np.where(u < 980, "train", np.where(u < 990, "validate", "test"))
    split_frame = meta.select("dicom_id", "study_id", "subject_id").with_columns(split=pl.Series(split))
    with gzip_writer(root / CXR_SPLIT) as gz:
        gz.write(split_frame.select(CXR_SPLIT_COLUMNS).write_csv().encode("utf-8"))


def _cxr_counts(meta: pl.DataFrame, tasks: list[ImageTask]) -> dict:
    return {
        "studies": meta["study_id"].n_unique(),
        "images": len(tasks),
        "images_by_view": dict(sorted(meta.group_by("view").len().iter_rows())),
        "studies_by_phase": dict(sorted(meta.unique("study_id").group_by("phase").len().iter_rows())),
        "degraded_images": int((meta["artifact"] >= 0.5).sum()),
    }


def deterioration(intime: np.ndarray, death: np.ndarray, hours: float = 48.0) -> np.ndarray:
    """Mean over ``[intime, intime + hours]`` of the charted deterioration ramp (0 to 1 over the
    ``DETERIORATION_HOURS`` before an in-hospital death; ``death`` < 0 for survivors): how much of it the
    first ``hours`` show."""
    steps = np.linspace(0.0, hours * HOUR, 97)
    t = intime[:, None] + steps[None, :]
    ramp = np.clip(1.0 - (death[:, None] - t) / (DETERIORATION_HOURS * HOUR), 0.0, 1.0)
    return np.where(death > 0, ramp.mean(axis=1), 0.0)


def _write_ground_truth(
    path: Path, pop: Population, stays_cxr: list[StayCxr], levels: dict[str, np.ndarray]
) -> None:
    st, adm = pop.stays, pop.admissions
    a = st["admission_index"]
    columns: dict[str, np.ndarray] = {
        "subject_id": st["subject_id"],
        "hadm_id": st["hadm_id"],
        "stay_id": st["stay_id"],
        "severity": st["severity"],
        "acuity": st["acuity"],
        "physiology": st["physiology"],
        "lung_injury": st["lung_injury"],
        "ventilated": st["ventilated"],
        "in_hospital_death": adm["hospital_expire_flag"][a] == 1,
        "death_in_stay": st["death_in_stay"],
        "deterioration_48h": deterioration(st["intime"], adm["deathtime"][a]),
        **{f"level_{k}": v for k, v in levels.items()},
        **{f"pheno_{k}": v for k, v in pop.labels.items()},
    }
    for prefix, attr in (("cxr", "findings"), ("rep", "read")):
        if not stays_cxr:
            break
        found = [getattr(x, attr) for x in stays_cxr]
        for name in (*SEVERITY_FIELDS, "habitus"):
            columns[f"{prefix}_{name}"] = np.array([getattr(f, name) for f in found], dtype=np.float64)
        for device in DEVICES:
            columns[f"{prefix}_{device}"] = np.array([device in f.devices for f in found])
    if stays_cxr:  # devices the reports mention only as "lines and tubes" (on follow-up studies)
        unnamed = [bool(set(x.findings.devices) - set(x.read.devices)) for x in stays_cxr]
        columns["rep_unnamed_devices"] = np.array(unnamed)
    pl.DataFrame(columns).write_parquet(path, statistics=False)


# ----------------------------------------------------------------------------------------------------
# Latent views (synthetic only): what each modality was rendered from
# ----------------------------------------------------------------------------------------------------

# Latent columns of each modality view (besides sample_id), in order.
EHR_LATENT = (
    *(f"level_{v}" for v in VITALS),
    "gcs_deficit",
    "capillary_refill",
    "fio2",
    "oxygen",
    "arterial_line",
    "ventilated",
    "deterioration_48h",
)
CXR_LATENT = (*SEVERITY_FIELDS, "habitus", *DEVICES)
REP_LATENT = (*CXR_LATENT, "unnamed_devices")


def latent_views(root: str | Path) -> dict[str, pl.DataFrame]:
    """The latent truth each modality of the hospital under ``root`` was rendered from, per ICU stay.

    ``{"ehr": ..., "cxr": ..., "rep": ...}``, each with ``sample_id`` (``str(stay_id)``, the cohorts'
    sample id) and numeric columns, one row per stay:

    * ``ehr``: each stay's mean level of every continuous charted variable (``level_hr``, ``level_sbp``,
      ...: the per-stay level around which its values are charted), the GCS deficit, the drives of
      abnormal capillary refill, of FiO2 and of oxygen therapy (noise-free), the arterial line,
      ventilation, and ``deterioration_48h`` (the mean of the pre-death deterioration ramp over the
      first 48 h, 0 for survivors);
    * ``cxr``: the stay's chest findings as drawn (severity in [0, 1] of each of ``SEVERITY_FIELDS``,
      the body habitus, 0/1 for each support device of the ICU phase), before per-study variation and
      image artifacts;
    * ``rep``: the same for what the radiologists report (after omissions and false positives), plus
      ``unnamed_devices`` (devices left unnamed, which follow-up reports mention as "lines and tubes").

    Synthetic data only: an upper bound of what encoders on the files can reach ("oracle").
    """
    root = Path(root)
    truth = pl.read_parquet(root / "ground_truth.parquet")
    info = json.loads((root / "synth_info.json").read_text())
    signal = float(info["options"].get("ehr_signal", 1.0))
    ids = truth["stay_id"].cast(pl.String)
    labels = {c.removeprefix("pheno_"): truth[c].cast(pl.Float64).to_numpy() for c in truth.columns
              if c.startswith("pheno_")}  # fmt: skip
    acuity = truth["acuity"].to_numpy()
    vent = truth["ventilated"].cast(pl.Float64).to_numpy()
    ehr: dict[str, np.ndarray] = {f"level_{name}": truth[f"level_{name}"].to_numpy() for name in VITALS}
    ehr["gcs_deficit"] = signal * (3.5 * labels["stroke"] + 1.3 * np.clip(acuity, 0, None))
    ehr["capillary_refill"] = signal * (1.6 * labels["shock"] + 0.6 * acuity)
    ehr["fio2"] = signal * (15 * labels["resp_failure"] + 8 * acuity)
    ehr["oxygen"] = signal * (1.5 * labels["resp_failure"] + labels["pneumonia"])
    ehr["arterial_line"] = np.maximum(vent, labels["shock"])
    ehr["ventilated"] = vent
    ehr["deterioration_48h"] = truth["deterioration_48h"].to_numpy()
    views = {"ehr": pl.DataFrame({"sample_id": ids, **ehr}).select("sample_id", *EHR_LATENT)}
    for modality, latent in (("cxr", CXR_LATENT), ("rep", REP_LATENT)):
        cols = [f"{modality}_{name}" for name in latent]
        if all(c in truth.columns for c in cols):
            frame = truth.select(
                pl.col(c).cast(pl.Float64).alias(c.removeprefix(f"{modality}_")) for c in cols
            )
            views[modality] = frame.insert_column(0, ids.alias("sample_id"))
    return views
