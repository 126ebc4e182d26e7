"""Patient-level, label-stratified, seeded cross-validation folds (used by every cohort builder).

Rule: all samples of a patient get the same fold. Patients are assigned by iterative stratification
(Sechidis, Tsoumakas & Vlahavas, ECML-PKDD 2011) lifted to groups: every label has a per-fold quota
(its positive count / k); the rarest label still to place is handled first, and each patient carrying
it goes to the fold that most lacks *that patient's labels* (the sum over its labels of the fold's
remaining quota, each label scaled by its quota, so that a patient with several labels does not
overfill a fold on its common ones); ties go to the fold that most lacks samples, then to a seeded
random choice. Binary tasks stratify on both classes (positives and negatives), multiclass tasks on
the classes (one-hot), multilabel tasks on the labels; patients with no positive label fill the folds
that most lack samples. Same input and seed, same folds.

A fixed split file replaces the assignment (e.g. MedFuse's official split converted to folds): a CSV
with a ``fold`` column (0..k-1) and one id column, ``sample_id`` / ``stay_id`` (per sample) or
``patient_id`` / ``subject_id`` (per patient). Every sample of the cohort must be covered; ids of
the file that are not in the cohort are ignored (and counted in the log).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

log = logging.getLogger(__name__)

SAMPLE_ID_COLUMNS = ("sample_id", "stay_id")
PATIENT_ID_COLUMNS = ("patient_id", "subject_id")


def label_matrix(
    frame: pl.DataFrame, label_columns: Sequence[str], kind: str, n_classes: int = 0
) -> np.ndarray:
    """(n, L) 0/1 matrix the folds are stratified on (see the module docstring)."""
    if kind == "multilabel":
        return frame.select(label_columns).to_numpy().astype(np.int64)
    y = frame[label_columns[0]].to_numpy().astype(np.int64)
    k = max(int(y.max()) + 1 if len(y) else 0, n_classes, 2)
    return np.eye(k, dtype=np.int64)[y]


def stratified_group_folds(groups: Sequence[str], labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold (0..n_folds-1) of every sample; ``labels`` is the (n, L) 0/1 matrix of :func:`label_matrix`."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    group_ids, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    n_groups = len(group_ids)
    if n_groups < n_folds:
        raise ValueError(f"{n_groups} patient(s) cannot fill {n_folds} folds (cohort.n_folds)")
    labels = np.asarray(labels, dtype=np.int64).reshape(len(inverse), -1)
    counts = np.zeros((n_groups, labels.shape[1]), dtype=np.int64)
    np.add.at(counts, inverse, labels)
    sizes = np.bincount(inverse, minlength=n_groups).astype(np.float64)
    rng = np.random.default_rng(seed)
    quota = counts.sum(axis=0) / n_folds
    scale = 1.0 / np.maximum(quota, 1.0)
    want_labels = np.tile(quota, (n_folds, 1)).astype(np.float64)
    want_size = np.full(n_folds, len(inverse) / n_folds)
    fold_of_group = np.full(n_groups, -1, dtype=np.int64)
    remaining = counts.copy()
    order = rng.permutation(n_groups)  # seeded order of patients within each label

    def place(g: int, score: np.ndarray) -> None:
        best = np.flatnonzero(score >= score.max() - 1e-9)
        if len(best) > 1:
            size = want_size[best]
            best = best[size >= size.max() - 1e-9]
        fold = int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
        fold_of_group[g] = fold
        want_labels[fold] -= counts[g]
        want_size[fold] -= sizes[g]
        remaining[g] = 0

    while True:
        totals = remaining.sum(axis=0)
        active = np.flatnonzero(totals > 0)
        if not len(active):
            break
        label = int(active[np.argmin(totals[active])])
        for g in order[remaining[order, label] > 0]:
            place(int(g), want_labels @ (counts[g] * scale))
    for g in order[fold_of_group[order] < 0]:
        place(int(g), want_size)
    return fold_of_group[inverse]


def read_split_file(path: str | Path, n_folds: int) -> tuple[str, pl.DataFrame]:
    """The split file as (``"sample"`` or ``"patient"``, frame with ``id`` (str) and ``fold``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    frame = pl.read_csv(path, infer_schema=False)
    id_col = next((c for c in (*SAMPLE_ID_COLUMNS, *PATIENT_ID_COLUMNS) if c in frame.columns), None)
    if id_col is None or "fold" not in frame.columns:
        raise ValueError(
            f"{path}: a split file needs a 'fold' column and one of the id columns "
            f"{', '.join(SAMPLE_ID_COLUMNS + PATIENT_ID_COLUMNS)}; found {frame.columns}"
        )
    out = frame.select(pl.col(id_col).str.strip_chars().alias("id"), pl.col("fold").str.strip_chars())
    fold = out["fold"].cast(pl.Int64, strict=False)
    bad = out.filter(fold.is_null() | (fold < 0) | (fold >= n_folds))
    if bad.height:
        raise ValueError(
            f"{path}: fold {bad['fold'][0]!r} of {id_col} {bad['id'][0]} is not in 0..{n_folds - 1}"
        )
    out = out.with_columns(fold=fold)
    dup = out.filter(pl.col("id").is_duplicated())
    if dup.height:
        raise ValueError(f"{path}: {id_col} {dup['id'][0]} is listed more than once")
    return ("sample" if id_col in SAMPLE_ID_COLUMNS else "patient"), out


def folds_from_split_file(frame: pl.DataFrame, path: str | Path, n_folds: int) -> np.ndarray:
    """Fold of every row of ``frame`` (``sample_id``, ``patient_id``) from a split file."""
    level, split = read_split_file(path, n_folds)
    key = "sample_id" if level == "sample" else "patient_id"
    joined = frame.select(key).join(split, left_on=key, right_on="id", how="left", maintain_order="left")
    missing = joined.filter(pl.col("fold").is_null())
    if missing.height:
        raise ValueError(
            f"{path}: {missing.height} cohort sample(s) have no fold, e.g. {key} {missing[key][0]!r}"
        )
    if level == "sample":  # folds are patient-level: a patient's stays must share one fold
        by_patient = (
            frame.select("sample_id", "patient_id")
            .with_columns(fold=joined["fold"])
            .group_by("patient_id", maintain_order=True)
            .agg(pl.col("fold").unique().sort(), pl.col("sample_id"))
            .filter(pl.col("fold").list.len() > 1)
        )
        if by_patient.height:
            row = by_patient.row(0, named=True)
            raise ValueError(
                f"{path}: patient {row['patient_id']!r} has samples in folds {row['fold']} "
                f"(samples {row['sample_id'][:5]}); folds must be patient-level "
                f"({by_patient.height} patient(s) affected)"
            )
    unused = split.join(frame.select(key), left_on="id", right_on=key, how="anti").height
    if unused:
        log.info("split file %s: %d id(s) are not in the cohort and were ignored", path, unused)
    return joined["fold"].to_numpy()


def assign_folds(
    frame: pl.DataFrame,
    label_columns: Sequence[str],
    kind: str,
    n_folds: int = 5,
    seed: int = 0,
    split_file: str | Path | None = None,
    n_classes: int = 0,
) -> pl.DataFrame:
    """``frame`` (with ``sample_id``, ``patient_id`` and the labels) plus an integer ``fold`` column."""
    if split_file:
        folds = folds_from_split_file(frame, split_file, n_folds)
    else:
        folds = stratified_group_folds(
            frame["patient_id"].to_list(), label_matrix(frame, label_columns, kind, n_classes), n_folds, seed
        )
    return frame.with_columns(fold=pl.Series(folds, dtype=pl.Int64))
