"""Metrics of the evaluation protocol, shared by the trainer and the reports.

* AUROC: binary; macro over labels (multi-label); macro one-vs-rest (multi-class). The binary AUROC is
  the Mann-Whitney statistic with average ranks for ties (identical to scikit-learn's
  ``roc_auc_score``); a label or class with only one class present in ``y_true`` is undefined and left
  out of the macro average (the number of labels used is reported); NaN when none is defined.
* AUPRC: average precision, Σ_n (R_n − R_{n−1}) P_n over distinct thresholds, without interpolation
  (identical to scikit-learn's ``average_precision_score``); macro over labels / classes likewise.
* Fold summaries: mean and sample standard deviation (ddof = 1) over folds.
* Significance tests over folds are the reports' (:mod:`omnifuse.report.stats`).

Input shapes: ``y_true`` (N,) 0/1 or (N, 1) for binary, (N, C) 0/1 for multi-label, (N,) class indices
for multi-class; ``y_score`` (N,) or (N, 1) scores for binary, (N, C) otherwise (multi-class: class
probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

KINDS = ("binary", "multilabel", "multiclass")


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (``scipy.stats.rankdata``'s default, exactly:
    every rank is a half-integer; scipy itself costs a second of import time per training process)."""
    x = np.asarray(x).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    bounds = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])  # tie-group starts, then len(x)
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(0.5 * (bounds[:-1] + bounds[1:] + 1), np.diff(bounds))
    return ranks


def auroc_binary(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve of one binary problem (NaN when only one class is present)."""
    y = np.asarray(y_true).reshape(-1).astype(bool)
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true and y_score differ in length: {y.shape} vs {s.shape}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auprc_binary(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Average precision of one binary problem (NaN without positives)."""
    y = np.asarray(y_true).reshape(-1).astype(bool)
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true and y_score differ in length: {y.shape} vs {s.shape}")
    if not y.any():
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of each distinct threshold
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _columns(kind: str, y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) binary targets and (N, K) scores of the K one-vs-rest / per-label problems."""
    if kind not in KINDS:
        raise ValueError(f"task kind must be one of {KINDS}, got {kind!r}")
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if kind == "binary":
        return y_true.reshape(-1, 1), y_score.reshape(-1, 1)
    if kind == "multilabel":
        if y_true.ndim != 2 or y_true.shape != y_score.shape:
            raise ValueError(
                f"multilabel: y_true and y_score must both be (N, C), got {y_true.shape}, {y_score.shape}"
            )
        return y_true, y_score
    if y_score.ndim != 2 or y_true.reshape(-1).shape[0] != y_score.shape[0]:
        raise ValueError(
            f"multiclass: y_true must be (N,) and y_score (N, C), got {y_true.shape}, {y_score.shape}"
        )
    classes = np.arange(y_score.shape[1])
    return (y_true.reshape(-1, 1) == classes[None, :]).astype(np.int8), y_score


def _macro(values: list[float]) -> tuple[float, int]:
    defined = [v for v in values if not math.isnan(v)]
    return (float(np.mean(defined)) if defined else float("nan")), len(defined)


def auroc(y_true: np.ndarray, y_score: np.ndarray, kind: str = "binary") -> float:
    """Binary AUROC, or the macro average over labels / one-vs-rest classes."""
    t, s = _columns(kind, y_true, y_score)
    return _macro([auroc_binary(t[:, j], s[:, j]) for j in range(t.shape[1])])[0]


def auprc(y_true: np.ndarray, y_score: np.ndarray, kind: str = "binary") -> float:
    """Binary average precision, or the macro average over labels / one-vs-rest classes."""
    t, s = _columns(kind, y_true, y_score)
    return _macro([auprc_binary(t[:, j], s[:, j]) for j in range(t.shape[1])])[0]


def compute_metrics(
    y_true: np.ndarray, y_score: np.ndarray, kind: str, label_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """AUROC and AUPRC (macro where applicable) plus the per-label / per-class values."""
    t, s = _columns(kind, y_true, y_score)
    per_auroc = [auroc_binary(t[:, j], s[:, j]) for j in range(t.shape[1])]
    per_auprc = [auprc_binary(t[:, j], s[:, j]) for j in range(t.shape[1])]
    macro_auroc, n_defined = _macro(per_auroc)
    out: dict[str, Any] = {
        "auroc": macro_auroc,
        "auprc": _macro(per_auprc)[0],
        "n": int(t.shape[0]),
        "n_labels_defined": n_defined,
    }
    if kind != "binary":
        names = list(label_names) if label_names is not None else [str(j) for j in range(t.shape[1])]
        out["per_label_auroc"] = dict(zip(names, per_auroc, strict=True))
        out["per_label_auprc"] = dict(zip(names, per_auprc, strict=True))
    else:
        out["prevalence"] = float(t.mean()) if t.size else float("nan")
    return out


def summarize_folds(
    fold_metrics: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("auroc", "auprc")
) -> dict[str, Any]:
    """Mean and sample std (ddof = 1; 0 for a single fold) of each metric over folds, plus the values."""
    out: dict[str, Any] = {"n_folds": len(fold_metrics)}
    for key in keys:
        values = [float(m[key]) for m in fold_metrics if key in m]
        arr = np.asarray(values, dtype=np.float64)
        out[key] = {
            "mean": float(arr.mean()) if arr.size else float("nan"),
            "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "folds": values,
        }
    return out
