"""Summaries over folds and the significance marker of Table 3.

Mean ± sample std (ddof = 1; 0 for a single fold), as in ``summary.json``.

Significance (docs/design.md "Evaluation protocol": paired t-test over the fold scores). The reference method
(DWFuse, ``omnifuse-b``) of a combination gets the marker when

1. its mean is strictly higher than every other method's mean, and
2. a two-sided paired t-test (:func:`scipy.stats.ttest_rel`, folds paired by fold number) against every
   other method gives p < alpha (default 0.05);

i.e. it is significantly better than *each* competitor, not only the runner-up (``p_max`` below alpha).
No correction for multiple comparisons is applied: requiring every test to pass is already the strict
intersection. Degenerate cases are decided without scipy, deterministically: identical fold scores
(all differences zero, up to 1e-12) give p = 1 (no marker); a constant non-zero difference (zero
variance) gives p = 0 (the t statistic is infinite); fewer than two paired folds give p = NaN (no
marker).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats as sps

TOL = 1e-12  # differences this small are zero (scores are probabilities-based, O(1))
GROUP = ("dataset", "task", "variant", "label", "combo", "setting", "missing_mode", "missing_rate", "metric")


def summarize(tidy: pl.DataFrame, by: tuple[str, ...] = GROUP) -> pl.DataFrame:
    """Mean, std (ddof 1, 0 for one fold) and fold count of ``value`` per group, in first-seen order."""
    return tidy.group_by(list(by), maintain_order=True).agg(
        pl.col("value").mean().alias("mean"),
        pl.when(pl.len() > 1).then(pl.col("value").std(ddof=1)).otherwise(0.0).alias("std"),
        pl.len().alias("n_folds"),
    )


def format_mean_std(mean: float, std: float, decimals: int = 3) -> str:
    if mean is None or not math.isfinite(mean):
        return ""
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value of ``a`` vs ``b`` (module docstring for degenerate cases)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same shape, got {a.shape} and {b.shape}")
    if a.size < 2:
        return float("nan")
    diff = a - b
    if np.all(np.abs(diff) <= TOL):
        return 1.0
    if np.ptp(diff) <= TOL:  # zero variance (up to float rounding of the planted/fold scores)
        return 0.0
    return float(sps.ttest_rel(a, b).pvalue)


@dataclass(frozen=True)
class Significance:
    marked: bool
    p_values: dict[str, float]  # competitor -> p
    p_max: float  # largest p over competitors (NaN if any is undefined or there is none)
    reference_mean: float
    best_other_mean: float


def significance(
    reference: Mapping[int, float], others: Mapping[str, Mapping[int, float]], alpha: float = 0.05
) -> Significance:
    """Marker for ``reference`` (fold -> score) against each of ``others`` (name -> fold -> score)."""
    ref_mean = float(np.mean(list(reference.values()))) if reference else float("nan")
    p_values: dict[str, float] = {}
    means: list[float] = []
    for name, scores in others.items():
        folds = sorted(set(reference) & set(scores))
        if set(folds) != set(reference) or set(folds) != set(scores):
            raise ValueError(
                f"significance test: {name} has folds {sorted(scores)}, the reference {sorted(reference)}"
            )
        p_values[name] = paired_p(
            np.array([reference[k] for k in folds]), np.array([scores[k] for k in folds])
        )
        means.append(float(np.mean([scores[k] for k in folds])))
    best_other = max(means) if means else float("nan")
    ps = list(p_values.values())
    p_max = max(ps) if ps and all(math.isfinite(p) for p in ps) else float("nan")
    marked = (
        bool(means)
        and len(reference) >= 2
        and all(ref_mean > m for m in means)
        and math.isfinite(p_max)
        and p_max < alpha
    )
    return Significance(marked, p_values, p_max, ref_mean, best_other)
