"""Stage 0: build the cohort table of a dataset and task (docs/design.md "Cohort table").

* kind ``mimic`` (tasks ``ihm``, ``pheno``): ICU stays from MIMIC-IV CSV or MEDS through the cohort rules
  of :mod:`omnifuse.cohorts.mimic.stays`; ``sample_id`` = stay id, ``patient_id`` = subject id;
  ``has_ehr`` = at least one clean event of the 17 variables inside the task window; with a MIMIC-CXR
  source the paired image (``has_cxr``, ``cxr_path``) and its report (``has_rep``, ``rep_path``) from
  :mod:`omnifuse.cohorts.cxr_pairing` (window end ``intime + ihm_hours`` for ihm, ``outtime`` for pheno).
* kind ``manifest`` (task ``subtype``): one row per manifest patient (:mod:`omnifuse.cohorts.manifest`).

Folds come from :mod:`omnifuse.cohorts.folds`. The table is written with
:func:`omnifuse.formats.cohort.write_cohort`, which validates it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from omnifuse.cohorts.cxr_pairing import attach_reports, pair_cxr, read_cxr_metadata
from omnifuse.cohorts.ehr.events import extract_events, scan_events
from omnifuse.cohorts.ehr.options import EventOptions
from omnifuse.cohorts.folds import assign_folds
from omnifuse.cohorts.manifest import read_manifest
from omnifuse.cohorts.mimic import open_source
from omnifuse.cohorts.mimic.sources import reading
from omnifuse.cohorts.mimic.stays import StayRules, apply_rules, icu_stays, ihm_stays, pheno_stays
from omnifuse.cohorts.mimic.tables import HospitalTables, SourceError
from omnifuse.cohorts.phenotypes import load_phenotypes
from omnifuse.formats.cohort import CohortMeta, synthetic_root

log = logging.getLogger(__name__)

MIMIC_TASKS = ("ihm", "pheno")
MANIFEST_TASKS = ("subtype",)
EPS_HOURS = 1e-6
STAY_COLUMNS = (
    "subject_id",
    "hadm_id",
    "stay_id",
    "intime",
    "outtime",
    "window_end",
    "los_hours",
    "age",
    "first_careunit",
)


@dataclass(frozen=True)
class CohortOptions:
    """Cohort rules and folds (config section ``cohort``; each field is also a CLI flag)."""

    n_folds: int = 5  # cross-validation folds (patient-level, stratified by label)
    seed: int = 0  # seed of the fold assignment
    split_file: str = ""  # CSV with fixed folds (fold + sample_id/stay_id or patient_id/subject_id)
    exclude_transfers: bool = True  # drop ICU stays whose first and last care unit differ
    single_stay_admissions: bool = True  # keep admissions with exactly one ICU stay
    min_age: int = 18  # minimum age in years
    age: str = "anchor_age"  # "anchor_age" (reference) or "admission" (shifted to the admission year)
    ihm_hours: float = 48.0  # in-hospital mortality: minimum stay length and observation window (hours)
    phenotypes: str = ""  # phenotype definition YAML (mimic3-benchmarks structure); "" = the demo file
    cxr_views: tuple[str, ...] = ("AP",)  # X-ray views that qualify for pairing
    require_ehr: bool = False  # drop stays without any EHR event in the window (mimic3-benchmarks does)

    def __post_init__(self) -> None:
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be >= 2, got {self.n_folds}")
        if self.ihm_hours <= 0:
            raise ValueError(f"ihm_hours must be > 0, got {self.ihm_hours}")
        if not self.cxr_views:
            raise ValueError("cxr_views must list at least one view")


@dataclass(frozen=True)
class DatasetSources:
    """What ``datasets.<name>`` says about a dataset's sources."""

    name: str
    kind: str  # "mimic" | "manifest"
    modalities: tuple[str, ...]
    ehr_format: str = "mimic-iv"
    ehr_path: str = ""
    cxr_path: str = ""
    reports_path: str = ""
    manifest: str = ""
    label_column: str = "label"
    classes: tuple[str, ...] = ("L1", "L2", "L3")

    @classmethod
    def from_config(cls, name: str, entry: dict[str, Any]) -> DatasetSources:
        """From a validated ``datasets.<name>`` config entry."""
        return cls(
            name=name,
            kind=entry["kind"],
            modalities=tuple(entry["modalities"]),
            ehr_format=entry.get("ehr", {}).get("format", "mimic-iv"),
            ehr_path=entry.get("ehr", {}).get("path", ""),
            cxr_path=entry.get("cxr", {}).get("path", ""),
            reports_path=entry.get("reports", {}).get("path", ""),
            manifest=entry.get("manifest", ""),
            label_column=entry.get("label_column", "label"),
            classes=tuple(entry.get("classes", ("L1", "L2", "L3"))),
        )


def _ehr_presence(stays: pl.DataFrame, events: pl.LazyFrame) -> pl.Series:
    """Per stay (in order): has at least one clean event inside ``[intime, window_end]`` (the
    reference's ``-1e-6 < t < end + 1e-6`` hours, in exact microseconds)."""
    eps_us = round(EPS_HOURS * 3_600_000_000)
    window = (pl.col("window_end") - pl.col("intime")).dt.total_microseconds()
    ends = stays.select("stay_id", window.alias("end"))
    seen = (
        events.select("stay_id", "us")
        .join(ends.lazy(), on="stay_id", how="inner")
        .filter((pl.col("us") > -eps_us) & (pl.col("us") < pl.col("end") + eps_us))
        .select("stay_id")
        .unique()
        .collect()
    )
    return stays["stay_id"].is_in(seen["stay_id"].implode()).alias("has_ehr")


def _pair_cxr(frame: pl.DataFrame, src: DatasetSources, views: tuple[str, ...]) -> pl.DataFrame:
    if not src.cxr_path:
        log.warning(
            "datasets.%s.cxr.path is empty: no X-ray source, so has_cxr and has_rep are false for every stay",
            src.name,
        )
        return frame.with_columns(
            has_cxr=pl.lit(False), cxr_path=pl.lit(None, pl.String), has_rep=pl.lit(False),
            rep_path=pl.lit(None, pl.String),
        )  # fmt: skip
    if "rep" in src.modalities and not src.reports_path:
        log.warning("datasets.%s.reports.path is empty: has_rep is false for every stay", src.name)
    log.info("pairing chest X-rays (views %s) from %s", list(views), src.cxr_path)
    paired = pair_cxr(frame, read_cxr_metadata(src.cxr_path), "window_end", views)
    return attach_reports(paired, src.reports_path or None)


@dataclass
class TaskStays:
    """The stays of a MIMIC task after the cohort rules, with labels and the observation window."""

    stays: pl.DataFrame  # STAY_COLUMNS + label columns + mortality
    label_columns: list[str]
    label_names: tuple[str, ...]
    kind: str  # binary | multilabel
    removed: dict[str, int]  # stays removed by each rule
    extra: dict[str, Any]  # provenance for the cohort metadata


def mimic_task_stays(tables: HospitalTables, task: str, options: CohortOptions) -> TaskStays:
    """Cohort rules (:mod:`omnifuse.cohorts.mimic.stays`) and the task's labels and window."""
    if task not in MIMIC_TASKS:
        raise ValueError(f"task {task!r} is not a MIMIC task ({', '.join(MIMIC_TASKS)})")
    rules = StayRules(options.exclude_transfers, options.single_stay_admissions, options.min_age, options.age)
    stays, removed = apply_rules(icu_stays(tables, rules.age), rules)
    extra: dict[str, Any] = {"source": tables.description, "options": asdict(options)}
    if task == "ihm":
        stays, short = ihm_stays(stays, options.ihm_hours)
        removed["shorter_than_ihm_hours"] = short
        label_columns, label_names, kind = ["y_ihm"], ("in-hospital mortality",), "binary"
        extra["window"] = f"[intime, intime + {options.ihm_hours:g} h]"
    else:
        groups = load_phenotypes(options.phenotypes or None)
        stays, label_columns = pheno_stays(stays, tables.diagnoses, groups)
        label_names, kind = tuple(g.name for g in groups), "multilabel"
        extra["window"] = "[intime, outtime]"
        extra["phenotypes"] = options.phenotypes or "omnifuse/resources/phenotypes_demo.yaml"
    stays = stays.sort("stay_id").select([*STAY_COLUMNS, *label_columns])
    return TaskStays(stays, label_columns, label_names, kind, removed, extra)


def build_mimic_cohort(
    src: DatasetSources,
    task: str,
    options: CohortOptions,
    events_path: str | Path | None = None,
) -> tuple[pl.DataFrame, CohortMeta]:
    """ICU-stay cohort of ``task`` (``ihm`` or ``pheno``). ``events_path``: the clean events of
    ``omnifuse ehr extract`` (for ``has_ehr``); without it the events are extracted here."""
    source = open_source(src.ehr_path, src.ehr_format)
    with reading(source):  # a damaged table is named (polars says only "unexpected end of file")
        ts = mimic_task_stays(source.tables(), task, options)
        if events_path is None:
            events = extract_events(source, EventOptions(), stays=ts.stays)[0].lazy()
    frame = ts.stays.with_columns(
        pl.col("stay_id").cast(pl.String).alias("sample_id"),
        pl.col("subject_id").cast(pl.String).alias("patient_id"),
    )
    if events_path is not None:
        try:
            frame = frame.with_columns(_ehr_presence(frame, scan_events(events_path)))
        except (pl.exceptions.PolarsError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            text = " ".join(str(exc).split())[:300]
            raise SourceError(
                f"{events_path}: not a readable EHR events file ({text}); it is truncated or damaged: "
                "rerun omnifuse ehr extract"
            ) from exc
    else:
        frame = frame.with_columns(_ehr_presence(frame, events))
    removed = dict(ts.removed)
    if options.require_ehr:
        removed["no_ehr_events"] = int((~frame["has_ehr"]).sum())
        frame = frame.filter(pl.col("has_ehr"))
    if "cxr" in src.modalities or "rep" in src.modalities:
        frame = _pair_cxr(frame, src, options.cxr_views)
    unused = [f"has_{m}" for m in ("ehr", "cxr", "rep") if m not in src.modalities]
    frame = frame.drop([c for c in unused if c in frame.columns])
    frame = assign_folds(
        frame, ts.label_columns, ts.kind, options.n_folds, options.seed, options.split_file or None
    )
    extra = _jsonable({**ts.extra, "exclusions": removed, **data_origin(src)})
    meta = CohortMeta(
        dataset=src.name,
        task=task,
        kind=ts.kind,
        label_columns=tuple(ts.label_columns),
        label_names=ts.label_names,
        modalities=src.modalities,
        n_folds=options.n_folds,
        extra=extra,
    )
    _log_cohort(frame, meta, removed)
    return _order(frame, meta), meta


def build_manifest_cohort(
    src: DatasetSources, task: str, options: CohortOptions
) -> tuple[pl.DataFrame, CohortMeta]:
    """One row per manifest patient (task ``subtype``: class index of the label)."""
    if task not in MANIFEST_TASKS:
        raise ValueError(f"task {task!r} is not a manifest task ({', '.join(MANIFEST_TASKS)})")
    if not src.manifest:
        raise ValueError(f"datasets.{src.name}.manifest is empty")
    frame = read_manifest(src.manifest, src.modalities, src.classes, src.label_column, task)
    label = f"y_{task}"
    frame = assign_folds(
        frame, [label], "multiclass", options.n_folds, options.seed, options.split_file or None,
        n_classes=len(src.classes),
    )  # fmt: skip
    meta = CohortMeta(
        dataset=src.name,
        task=task,
        kind="multiclass",
        label_columns=(label,),
        label_names=src.classes,
        modalities=src.modalities,
        n_folds=options.n_folds,
        extra=_jsonable(
            {
                "source": str(src.manifest),
                "options": asdict(options),
                "label_column": src.label_column,
                **data_origin(src),
            }
        ),
    )
    _log_cohort(frame, meta, {"manifest_rows": frame.height})
    return _order(frame, meta), meta


def build_cohort(
    src: DatasetSources, task: str, options: CohortOptions, events_path: str | Path | None = None
) -> tuple[pl.DataFrame, CohortMeta]:
    """The cohort table of ``task`` for a dataset of either kind."""
    if src.kind == "mimic":
        return build_mimic_cohort(src, task, options, events_path)
    if src.kind == "manifest":
        return build_manifest_cohort(src, task, options)
    raise ValueError(f"unknown dataset kind {src.kind!r}")


def data_origin(src: DatasetSources) -> dict[str, Any]:
    """``synthetic``: whether every source the cohort reads is an ``omnifuse synth`` output (found by
    its marker file, not by the config), and ``sources``: the paths read. Captions and reports take
    the data's origin from here."""
    paths = [p for p in (src.ehr_path, src.cxr_path, src.reports_path, src.manifest) if p]
    return {"synthetic": bool(paths) and all(synthetic_root(p) for p in paths), "sources": paths}


def _jsonable(extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` as it reads back from the parquet metadata (tuples become lists)."""
    return json.loads(json.dumps(extra))


def _order(frame: pl.DataFrame, meta: CohortMeta) -> pl.DataFrame:
    first = ["sample_id", "patient_id", "fold", *meta.label_columns, *(f"has_{m}" for m in meta.modalities)]
    return frame.select([*first, *(c for c in frame.columns if c not in first)])


def _log_cohort(frame: pl.DataFrame, meta: CohortMeta, removed: dict[str, int]) -> None:
    log.info("%s/%s: %s", meta.dataset, meta.task, ", ".join(f"{k} {v}" for k, v in removed.items()))
    present = ", ".join(f"{m} {int(frame[f'has_{m}'].sum())}" for m in meta.modalities)
    log.info(
        "%s/%s: %d samples of %d patients in %d folds; modalities present: %s",
        meta.dataset,
        meta.task,
        frame.height,
        frame["patient_id"].n_unique(),
        meta.n_folds,
        present,
    )
    if meta.kind == "multilabel":
        prevalence = frame.select(meta.label_columns).mean().row(0)
        log.info(
            "%s/%s: label prevalence %s", meta.dataset, meta.task, ", ".join(f"{p:.2f}" for p in prevalence)
        )
    else:
        counts = frame[meta.label_columns[0]].value_counts(sort=True)
        log.info("%s/%s: label counts %s", meta.dataset, meta.task, dict(counts.iter_rows()))
