"""The cohort table: the contract between stage 0 and every later stage (docs/design.md "Cohort table").

``results/{dataset}/cohorts/{task}.parquet`` has one row per sample and the columns

* ``sample_id`` (str, unique) and ``patient_id`` (str: the grouping unit of every split);
* ``fold`` (int, 0..n_folds-1, patient-level: all samples of a patient share one fold);
* the label columns named in the metadata (``y_*``): binary 0/1 (``binary``: one column;
  ``multilabel``: one column per label) or a class index 0..C-1 (``multiclass``: one column);
* ``has_<modality>`` (bool) for every modality of the dataset: natural availability;
* any other columns a stage needs (stay times, paired study ids, relative file paths, ...).

The task description travels inside the parquet file as key-value metadata (``omnifuse.cohort``), so a
cohort file is self-describing: :func:`read_cohort` returns it as :class:`CohortMeta`. Both writing and
reading validate the invariants and name the offending sample, patient or column.

The cohort's digest (:func:`cohort_digest`: sha256 of the task description and of every column a later
stage depends on: ids, folds, labels, ``has_<modality>``, input paths, stay windows) is stored in the
metadata too (``omnifuse.cohort.sha256``) and checked on reading. Every feature cache records
the digest of the cohort it was built for (:class:`CohortRef`), and every stage that reads a cache for
a cohort compares the two (:func:`omnifuse.formats.cache.load_for_cohort`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from omnifuse.formats.atomic import atomic_path

SYNTH_MARKER = "synth_info.json"  # written at the root of every `omnifuse synth` output
METADATA_KEY = "omnifuse.cohort"
DIGEST_KEY = "omnifuse.cohort.sha256"
# columns besides ids, folds, labels and availability whose change changes what a cache must hold
DIGEST_EXTRA_COLUMNS = ("intime", "window_end")
TASK_KINDS = ("binary", "multilabel", "multiclass")
MODALITIES = ("ehr", "cxr", "rep", "ct", "pet")


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


def synthetic_root(path: str | Path) -> Path | None:
    """The folder at or above ``path`` that holds an ``omnifuse synth`` output (its
    :data:`SYNTH_MARKER`), or None: real data."""
    p = Path(path).absolute()
    for folder in (p, *p.parents):
        if (folder / SYNTH_MARKER).is_file():
            return folder
    return None


def window_of(meta: CohortMeta) -> str:
    """The cohort's observation window as its metadata states it ("" for manifest cohorts)."""
    return str(meta.extra.get("window", ""))


def cohort_digest(frame: pl.DataFrame, meta: CohortMeta) -> str:
    """sha256 of what a feature cache and a run depend on: the task (dataset, task, kind, labels,
    modalities, folds, window) and, row by row in table order, ``sample_id``, ``patient_id``, ``fold``,
    the labels, ``has_<m>`` and ``<m>_path`` of every modality, and the stay window columns."""
    columns = ["sample_id", "patient_id", "fold", *meta.label_columns]
    for m in meta.modalities:
        columns += [c for c in (f"has_{m}", f"{m}_path") if c in frame.columns]
    columns += [c for c in DIGEST_EXTRA_COLUMNS if c in frame.columns]
    head = {
        "dataset": meta.dataset,
        "task": meta.task,
        "kind": meta.kind,
        "label_columns": list(meta.label_columns),
        "modalities": list(meta.modalities),
        "n_folds": meta.n_folds,
        "window": window_of(meta),
        "columns": columns,
    }
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    table = frame.select(
        (pl.col(c).dt.epoch("us") if frame[c].dtype.is_temporal() else pl.col(c)).cast(pl.String).alias(c)
        for c in columns
    )  # times as integers: the digest must not depend on how a polars version prints them
    digest.update(table.write_csv(include_header=False, null_value="\\N").encode("utf-8"))
    return digest.hexdigest()


@dataclass(frozen=True)
class CohortRef:
    """The identity of a cohort table that a feature cache records (its attributes) and that every
    stage reading a cache for a cohort checks: :meth:`mismatch` names the attribute and both values."""

    path: str
    sha256: str
    dataset: str
    task: str
    window: str

    KEYS = ("dataset", "task", "window", "cohort_sha256")

    @classmethod
    def of(cls, path: str | Path, frame: pl.DataFrame, meta: CohortMeta) -> CohortRef:
        return cls(str(path), cohort_digest(frame, meta), meta.dataset, meta.task, window_of(meta))

    def cache_attrs(self) -> dict[str, str]:
        """Attributes a cache built for this cohort carries."""
        return {
            "cohort": self.path,
            "cohort_sha256": self.sha256,
            "dataset": self.dataset,
            "task": self.task,
            "window": self.window,
        }

    def mismatch(self, attrs: dict[str, object]) -> tuple[str, str, str] | None:
        """(attribute, recorded value, this cohort's value) of the first attribute of ``attrs`` that
        differs from this cohort; None when they all match."""
        mine = self.cache_attrs()
        for key in self.KEYS:
            found = attrs.get(key)
            found = found.decode() if isinstance(found, bytes) else found
            if str(found) != mine[key]:
                return key, str(found), mine[key]
        return None


def write_cohort(path: str | Path, frame: pl.DataFrame, meta: CohortMeta) -> None:
    """Validate and write the cohort table (with its metadata and digest) atomically."""
    path = Path(path)
    validate_cohort(frame, meta, where=str(path))
    metadata = {METADATA_KEY: meta.to_json(), DIGEST_KEY: cohort_digest(frame, meta)}
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, metadata=metadata)


def _metadata(path: Path) -> dict[str, str]:
    try:
        return pl.read_parquet_metadata(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise CohortError(
            f"{path}: not a readable parquet cohort table ({' '.join(str(exc).split())})"
        ) from exc


def read_cohort(path: str | Path) -> tuple[pl.DataFrame, CohortMeta]:
    """Read and validate a cohort table; return it with its task description. A recorded digest that
    does not match the table (edited by other means than :func:`write_cohort`) is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cohort table not found: {path}")
    metadata = _metadata(path)
    text = metadata.get(METADATA_KEY)
    if text is None:
        raise CohortError(
            f"{path}: no '{METADATA_KEY}' metadata; was it written by omnifuse.formats.cohort.write_cohort?"
        )
    meta = CohortMeta.from_json(text)
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise CohortError(f"{path}: unreadable cohort table ({' '.join(str(exc).split())})") from exc
    validate_cohort(frame, meta, where=str(path))
    recorded = metadata.get(DIGEST_KEY)
    if recorded is not None and recorded != cohort_digest(frame, meta):
        raise CohortError(
            f"{path}: the table does not match its recorded sha256 {recorded} (it was changed by other "
            "means than omnifuse's write_cohort); rebuild it with omnifuse cohort"
        )
    return frame, meta


def cohort_ref(path: str | Path) -> CohortRef:
    """Read a cohort table and return its :class:`CohortRef`."""
    frame, meta = read_cohort(path)
    return CohortRef.of(path, frame, meta)
