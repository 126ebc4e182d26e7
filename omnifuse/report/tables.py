"""Tables 2, 3 and 4 (docs/design.md "Tables"): a human table ("mean ± std" strings, AUROC unless
stated) built from the tidy frame of :func:`omnifuse.report.collect.collect`; the tidy frame itself
(every fold of every run, AUROC and AUPRC) is the table's long-form CSV. Only ``complete`` runs enter
the tables.

* Table 2 (modality competition): per (dataset, task) and multi-modality combination, the dominated
  (best) single modality by mean AUROC among the unimodal runs of the combination's modalities, its
  AUROC and AUPRC, Concat's, and the signed drop (Concat mean − best single mean). The AUPRC columns
  are those of the same (AUROC-dominated) modality.
* Table 3 (fusion methods): rows = combinations (pairs, then all three, dataset modality order),
  columns = methods, AUROC, with the significance marker on the reference (DWFuse) where it is
  significantly better than every other method (:mod:`omnifuse.report.stats`); ``p_max`` is the largest
  paired-t-test p-value of the reference against the other methods.
* Table 4 (ablation): rows = (dataset, task, row (a)-(f)), columns = combinations, AUROC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from omnifuse.formats.run import COMPLETE, Run
from omnifuse.report.collect import ReportError, method_label
from omnifuse.report.runs import combo_parts, sort_combos
from omnifuse.report.stats import format_mean_std, significance, summarize
from omnifuse.workflow.plan import ROW_LABELS, TABLE4_ROWS, table4_variant

Key = tuple[str, str, str, str, str]  # dataset, task, variant, combo, metric


class Summary:
    """Fold scores and mean/std of every (dataset, task, variant, combo, metric) of complete runs."""

    def __init__(self, tidy: pl.DataFrame):
        complete = tidy.filter(pl.col("setting") == COMPLETE)
        if complete.is_empty():
            raise ReportError("no 'complete' runs among the given runs (tables use complete runs only)")
        self.tidy = complete
        self.stats: dict[Key, tuple[float, float, int]] = {}
        for row in summarize(complete).iter_rows(named=True):
            key = (row["dataset"], row["task"], row["variant"], row["combo"], row["metric"])
            self.stats[key] = (row["mean"], row["std"], row["n_folds"])
        self.folds: dict[Key, dict[int, float]] = {}
        for row in complete.iter_rows(named=True):
            key = (row["dataset"], row["task"], row["variant"], row["combo"], row["metric"])
            self.folds.setdefault(key, {})[row["fold"]] = row["value"]

    def targets(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys(zip(self.tidy["dataset"], self.tidy["task"], strict=True)))

    def combos(self, dataset: str, task: str, variants: Sequence[str] | None = None) -> list[str]:
        frame = self.tidy.filter((pl.col("dataset") == dataset) & (pl.col("task") == task))
        order = sort_combos(frame["combo"].to_list())
        if variants is not None:
            frame = frame.filter(pl.col("variant").is_in(list(variants)))
        present = set(frame["combo"].to_list())
        return [c for c in order if c in present and len(combo_parts(c)) >= 2]

    def get(self, dataset: str, task: str, variant: str, combo: str, metric: str) -> tuple[float, float]:
        key = (dataset, task, variant, combo, metric)
        if key not in self.stats:
            raise ReportError(f"missing run {Run(dataset, task, variant, combo).dir} (needed for {metric})")
        mean, std, _ = self.stats[key]
        return mean, std

    def fold_scores(self, dataset: str, task: str, variant: str, combo: str, metric: str) -> dict[int, float]:
        self.get(dataset, task, variant, combo, metric)
        return self.folds[(dataset, task, variant, combo, metric)]


def _signed(value: float, decimals: int) -> str:
    return "" if not math.isfinite(value) else f"{value:+.{decimals}f}"


def table2(tidy: pl.DataFrame, decimals: int = 3) -> pl.DataFrame:
    """Human Table 2 (module docstring)."""
    s = Summary(tidy)
    rows: list[dict[str, Any]] = []
    for dataset, task in s.targets():
        for combo in s.combos(dataset, task, ["concat"]):
            singles = combo_parts(combo)
            auroc = {m: s.get(dataset, task, "unimodal", m, "auroc") for m in singles}
            best = max(singles, key=lambda m: auroc[m][0])  # ties: first in dataset order
            row: dict[str, Any] = {
                "dataset": dataset, "task": task, "combination": combo, "best_single": best,
            }  # fmt: skip
            for metric in ("auroc", "auprc"):
                b_mean, b_std = s.get(dataset, task, "unimodal", best, metric)
                c_mean, c_std = s.get(dataset, task, "concat", combo, metric)
                row[f"best_single_{metric}"] = format_mean_std(b_mean, b_std, decimals)
                row[f"concat_{metric}"] = format_mean_std(c_mean, c_std, decimals)
                row[f"drop_{metric}"] = _signed(c_mean - b_mean, decimals)
            rows.append(row)
    if not rows:
        raise ReportError("table2: no concat run of a multi-modality combination among the runs")
    return pl.DataFrame(rows)


def table3(
    tidy: pl.DataFrame,
    methods: Sequence[str] | None = None,
    reference: str = "omnifuse-b",
    alpha: float = 0.05,
    decimals: int = 3,
    marker: str = "*",
    metric: str = "auroc",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(human Table 3, p-values: one row per combination and competitor) (module docstring)."""
    s = Summary(tidy)
    methods = list(methods) if methods else list(dict.fromkeys(s.tidy["variant"].to_list()))
    if reference not in methods:
        raise ValueError(f"table3: the reference {reference!r} is not among the methods {methods}")
    labels = [method_label(v) for v in methods]
    if len(set(labels)) != len(labels):
        raise ValueError(f"table3: methods with the same label: {methods}")
    rows: list[dict[str, Any]] = []
    p_rows: list[dict[str, Any]] = []
    for dataset, task in s.targets():
        for combo in s.combos(dataset, task, methods):
            ref = s.fold_scores(dataset, task, reference, combo, metric)
            others = {v: s.fold_scores(dataset, task, v, combo, metric) for v in methods if v != reference}
            sig = significance(ref, others, alpha)
            row: dict[str, Any] = {"dataset": dataset, "task": task, "combination": combo}
            for v, label in zip(methods, labels, strict=True):
                cell = format_mean_std(*s.get(dataset, task, v, combo, metric), decimals)
                row[label] = cell + (marker if v == reference and sig.marked else "")
            row["p_max"] = sig.p_max
            rows.append(row)
            for v, p in sig.p_values.items():
                p_rows.append(
                    {
                        "dataset": dataset, "task": task, "combination": combo, "metric": metric,
                        "reference": reference, "competitor": v, "p_value": p, "alpha": alpha,
                        "significant": sig.marked,
                    }
                )  # fmt: skip
    if not rows:
        raise ReportError("table3: no multi-modality combination among the runs")
    return pl.DataFrame(rows), pl.DataFrame(p_rows)


def table4(tidy: pl.DataFrame, rows: Sequence[str] = TABLE4_ROWS, decimals: int = 3) -> pl.DataFrame:
    """Human Table 4: one row per (dataset, task, ablation row), one column per combination."""
    s = Summary(tidy)
    variants = [table4_variant(r) for r in rows]
    out: list[dict[str, Any]] = []
    columns: list[str] = []
    for dataset, task in s.targets():
        combos = s.combos(dataset, task, variants)
        columns.extend(c for c in combos if c not in columns)
        for r, v in zip(rows, variants, strict=True):
            row: dict[str, Any] = {"dataset": dataset, "task": task, "row": ROW_LABELS[r]}
            for combo in combos:
                row[combo] = format_mean_std(*s.get(dataset, task, v, combo, "auroc"), decimals)
            out.append(row)
    if not columns:
        raise ReportError("table4: no multi-modality combination among the runs")
    frame = pl.DataFrame(out, schema={"dataset": pl.String, "task": pl.String, "row": pl.String,
                                      **{c: pl.String for c in columns}})  # fmt: skip
    return frame.with_columns(pl.col(columns).fill_null(""))
