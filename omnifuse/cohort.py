"""The cohort table: the contract between stage 0 and every later stage (DESIGN.md "Cohort table").

``results/{dataset}/cohorts/{task}.parquet`` has one row per sample and the columns

* ``sample_id`` (str, unique) and ``patient_id`` (str: the grouping unit of every split);
* ``fold`` (int, 0..n_folds-1, patient-level: all samples of a patient share one fold);
* the label columns named in the metadata (``y_*``): binary 0/1 (``binary``: one column;
  ``multilabel``: one column per label) or a class index 0..C-1 (``multiclass``: one column);
* ``has_<modality>`` (bool) for every modality of the dataset: natural availability;
* any other columns a stage needs (stay times, paired study ids, relative file paths, ...);
* optional regions of interest for the volume modalities (CT, PET), one box per sample, null where
  there is none: ``roi_lps_mm`` (shared by every volume of the sample, which must share one frame of
  reference) is ``[x0, y0, z0, x1, y1, z1]`` in patient millimetres in the DICOM convention (LPS:
  x toward the patient's left, y toward posterior, z toward the head; ``x0 <= x1`` etc., equal
  corners for a point); ``<modality>_roi_vox`` (e.g. ``ct_roi_vox``) is the same for one modality in
  0-based voxel indices ``[i0, j0, k0, i1, j1, k1]`` of its NIfTI file as stored, and wins over
  ``roi_lps_mm`` for that modality. Both are lists of 6 finite floats (``ROI_LENGTH``).

The task description travels inside the parquet file as key-value metadata (``omnifuse.cohort``), so a
cohort file is self-describing: :func:`read_cohort` returns it as :class:`CohortMeta`. Both writing and
reading validate the invariants and name the offending sample, patient or column.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from omnifuse.io import atomic_path

METADATA_KEY = "omnifuse.cohort"
TASK_KINDS = ("binary", "multilabel", "multiclass")
MODALITIES = ("ehr", "cxr", "rep", "ct", "pet")
ROI_MODALITIES = ("ct", "pet")
ROI_COLUMN = "roi_lps_mm"
ROI_LENGTH = 6


def roi_voxel_column(modality: str) -> str:
    """Name of the voxel ROI column of a volume modality (``ct_roi_vox``)."""
    return f"{modality}_roi_vox"


def roi_columns(columns: list[str] | tuple[str, ...]) -> list[str]:
    """The ROI columns among ``columns``."""
    names = {ROI_COLUMN, *(roi_voxel_column(m) for m in ROI_MODALITIES)}
    return [c for c in columns if c in names]


class CohortError(ValueError):
    """A cohort table that breaks the contract (message names the file and the culprit)."""


@dataclass(frozen=True)
class CohortMeta:
    dataset: str
    task: str
    kind: str  # "binary" | "multilabel" | "multiclass"
    label_columns: tuple[str, ...]
    label_names: tuple[str, ...]  # display names: phenotype names, or class names for multiclass
    modalities: tuple[str, ...]
    n_folds: int
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: sources, rules, parameters

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise CohortError(f"task kind must be one of {TASK_KINDS}, got {self.kind!r}")
        if not self.label_columns or any(not c.startswith("y_") for c in self.label_columns):
            raise CohortError(f"label columns must be non-empty and start with 'y_': {self.label_columns}")
        if self.kind != "multilabel" and len(self.label_columns) != 1:
            raise CohortError(f"a {self.kind} task has exactly one label column, got {self.label_columns}")
        if self.kind == "multilabel" and len(self.label_names) != len(self.label_columns):
            raise CohortError("multilabel: one label name per label column")
        if self.kind == "multiclass" and len(self.label_names) < 2:
            raise CohortError("multiclass: label_names must list the classes (at least two)")
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown or not self.modalities:
            raise CohortError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")
        if self.n_folds < 2:
            raise CohortError(f"n_folds must be >= 2, got {self.n_folds}")

    @property
    def n_outputs(self) -> int:
        """Width of a model's output: 1 (binary), one per label, or one per class."""
        if self.kind == "binary":
            return 1
        return len(self.label_columns) if self.kind == "multilabel" else len(self.label_names)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CohortMeta:
        raw = json.loads(text)
        for key in ("label_columns", "label_names", "modalities"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


def validate_cohort(frame: pl.DataFrame, meta: CohortMeta, where: str = "cohort") -> None:
    """Raise :class:`CohortError` unless ``frame`` satisfies the contract described by ``meta``."""
    required = [
        "sample_id",
        "patient_id",
        "fold",
        *meta.label_columns,
        *(f"has_{m}" for m in meta.modalities),
    ]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CohortError(f"{where}: missing column(s) {missing}")
    for col in ("sample_id", "patient_id"):
        if frame[col].dtype != pl.String:
            raise CohortError(f"{where}: {col} must be a string column, got {frame[col].dtype}")
        if frame[col].null_count():
            raise CohortError(f"{where}: {col} has {frame[col].null_count()} missing value(s)")
    dup = frame.filter(pl.col("sample_id").is_duplicated())
    if dup.height:
        raise CohortError(f"{where}: duplicate sample_id {dup['sample_id'][0]!r}")
    if frame["fold"].null_count() or not frame["fold"].dtype.is_integer():
        raise CohortError(f"{where}: fold must be an integer column without missing values")
    out_of_range = frame.filter((pl.col("fold") < 0) | (pl.col("fold") >= meta.n_folds))
    if out_of_range.height:
        raise CohortError(
            f"{where}: fold of sample {out_of_range['sample_id'][0]!r} is outside 0..{meta.n_folds - 1}"
        )
    split = frame.group_by("patient_id").agg(pl.col("fold").n_unique().alias("n")).filter(pl.col("n") > 1)
    if split.height:
        raise CohortError(f"{where}: patient {split['patient_id'][0]!r} appears in more than one fold")
    for col in meta.label_columns:
        values = frame[col]
        if values.null_count():
            bad = frame.filter(pl.col(col).is_null())["sample_id"][0]
            raise CohortError(f"{where}: label {col} is missing for sample {bad!r}")
        upper = len(meta.label_names) - 1 if meta.kind == "multiclass" else 1
        wrong = frame.filter(
            (pl.col(col) < 0) | (pl.col(col) > upper) | (pl.col(col).cast(pl.Int64) != pl.col(col))
        )
        if wrong.height:
            raise CohortError(
                f"{where}: label {col} of sample {wrong['sample_id'][0]!r} is not in 0..{upper}"
            )
    for m in meta.modalities:
        if frame[f"has_{m}"].dtype != pl.Boolean or frame[f"has_{m}"].null_count():
            raise CohortError(f"{where}: has_{m} must be a boolean column without missing values")
    for col in roi_columns(frame.columns):
        _validate_roi_column(frame, col, where)


def _validate_roi_column(frame: pl.DataFrame, col: str, where: str) -> None:
    dtype = frame[col].dtype
    if not isinstance(dtype, pl.List | pl.Array) or not dtype.inner.is_numeric():
        raise CohortError(f"{where}: {col} must be a list of {ROI_LENGTH} numbers per sample, got {dtype}")
    for sid, box in zip(frame["sample_id"].to_list(), frame[col].to_list(), strict=True):
        if box is None:
            continue
        values = list(box)
        ok = len(values) == ROI_LENGTH and all(v is not None and math.isfinite(v) for v in values)
        if not ok or any(values[a] > values[a + 3] for a in range(3)):
            raise CohortError(
                f"{where}: {col} of sample {sid!r} must be [x0, y0, z0, x1, y1, z1] (6 finite numbers, "
                f"x0 <= x1, y0 <= y1, z0 <= z1), got {values}"
            )


def write_cohort(path: str | Path, frame: pl.DataFrame, meta: CohortMeta) -> None:
    """Validate and write the cohort table (with its metadata) atomically."""
    path = Path(path)
    validate_cohort(frame, meta, where=str(path))
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, metadata={METADATA_KEY: meta.to_json()})


def read_cohort(path: str | Path) -> tuple[pl.DataFrame, CohortMeta]:
    """Read and validate a cohort table; return it with its task description."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cohort table not found: {path}")
    text = pl.read_parquet_metadata(path).get(METADATA_KEY)
    if text is None:
        raise CohortError(
            f"{path}: no '{METADATA_KEY}' metadata; was it written by omnifuse.cohort.write_cohort?"
        )
    meta = CohortMeta.from_json(text)
    frame = pl.read_parquet(path)
    validate_cohort(frame, meta, where=str(path))
    return frame, meta
