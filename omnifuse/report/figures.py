"""Figures 2, 4, 5, 6 and 7: each function returns (matplotlib figure, tidy frame of the plotted
numbers); :func:`omnifuse.report.write.save_figure` writes PNG + PDF. Means ± sample std over folds.

* Fig. 2: per multi-modality combination, bars of the best unimodal run (by mean AUROC among the
  combination's modalities), Concat and DWFuse (``omnifuse-b``).
* Fig. 4: AUROC of OmniFuse on all modalities vs the missing rate, one line per removal mode (each
  single modality, and ``random``); rate 0 is the ``complete`` run, shared by every line.
* Fig. 5 / Fig. 6: with vs without imputation (``omnifuse`` vs ``omnifuse-noimp``), AUROC vs missing
  rate under random removal, one panel per combination (Fig. 6: the all-modality combination only).
* Fig. 7: imputation similarity (``imp_cos``, and ``imp_cos_<m>`` per modality) and inner-validation
  AUROC over training epochs of one run, mean over the folds that reached the epoch, ± std band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from omnifuse.formats.run import COMPLETE
from omnifuse.report.collect import ReportError
from omnifuse.report.runs import combo_parts, modality_order, sort_combos
from omnifuse.report.stats import summarize
from omnifuse.report.style import ReportStyle
from omnifuse.workflow.plan import METHOD_LABELS

DEFAULT_STYLE = ReportStyle()
CURVE_SCHEMA = {
    "panel": pl.String, "series": pl.String, "x": pl.Float64, "mean": pl.Float64, "std": pl.Float64,
    "n_folds": pl.Int64,
}  # fmt: skip


def _pyplot(style: ReportStyle) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style.validate()
    plt.rcParams.update(
        {
            "font.size": style.font_size,
            "axes.titlesize": style.font_size,
            "axes.labelsize": style.font_size,
            "legend.fontsize": style.font_size * 0.85,
            "xtick.labelsize": style.font_size * 0.85,
            "ytick.labelsize": style.font_size * 0.85,
            "svg.hashsalt": "omnifuse",
        }
    )
    return plt


def _colors(style: ReportStyle, n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps[style.colormap]
    if getattr(cmap, "N", 256) < 256:  # qualitative map: its own colours in order
        return [cmap(i % cmap.N) for i in range(n)]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _grid(plt: Any, style: ReportStyle, n_panels: int, max_cols: int = 4) -> tuple[Any, list[Any]]:
    cols = min(n_panels, max_cols)
    nrows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(style.fig_width, style.fig_height * nrows), squeeze=False, sharey=True
    )
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def _complete(tidy: pl.DataFrame) -> pl.DataFrame:
    return tidy.filter(pl.col("setting") == COMPLETE)


def _targets(tidy: pl.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(tidy["dataset"], tidy["task"], strict=True)))


def _panel(dataset: str, task: str, rest: str, many: bool) -> str:
    return f"{dataset}/{task} {rest}".strip() if many else rest


# ----- Figure 2 -----
def fig2_data(tidy: pl.DataFrame, metric: str = "auroc") -> pl.DataFrame:
    """Bars: panel (dataset/task), combination, series, variant, modality, mean, std, n_folds."""
    stats = summarize(_complete(tidy).filter(pl.col("metric") == metric))
    lookup = {(r["dataset"], r["task"], r["variant"], r["combo"]): r for r in stats.iter_rows(named=True)}
    rows = []
    targets = _targets(stats)
    for dataset, task in targets:
        combos = stats.filter(
            (pl.col("dataset") == dataset) & (pl.col("task") == task) & pl.col("variant").is_in(
                ["concat", "omnifuse-b"])
        )["combo"].to_list()  # fmt: skip
        for combo in sort_combos(c for c in combos if len(combo_parts(c)) >= 2):
            singles = [lookup.get((dataset, task, "unimodal", m)) for m in combo_parts(combo)]
            if any(s is None for s in singles):
                raise ReportError(
                    f"fig2: {dataset}/{task} {combo}: a unimodal run of its modalities is missing"
                )
            best = max(singles, key=lambda r: r["mean"])  # type: ignore[union-attr]
            for series, rec in (
                ("Best unimodal", best),
                ("Concat", lookup.get((dataset, task, "concat", combo))),
                ("DWFuse", lookup.get((dataset, task, "omnifuse-b", combo))),
            ):
                if rec is None:
                    raise ReportError(f"fig2: {dataset}/{task} {combo}: no {series} run")
                rows.append(
                    {
                        "panel": _panel(dataset, task, "", len(targets) > 1),
                        "dataset": dataset, "task": task,
                        "combination": combo, "series": series, "variant": rec["variant"],
                        "modality": rec["combo"], "metric": metric, "mean": rec["mean"], "std": rec["std"],
                        "n_folds": rec["n_folds"],
                    }
                )  # fmt: skip
    if not rows:
        raise ReportError("fig2: no multi-modality combination with concat / omnifuse-b runs")
    return pl.DataFrame(rows)


def fig2(tidy: pl.DataFrame, style: ReportStyle = DEFAULT_STYLE) -> tuple[Any, pl.DataFrame]:
    import numpy as np

    data = fig2_data(tidy)
    plt = _pyplot(style)
    panels = list(dict.fromkeys(data["panel"].to_list()))
    fig, axes = _grid(plt, style, len(panels), max_cols=2)
    series = ["Best unimodal", "Concat", "DWFuse"]
    colors = _colors(style, len(series))
    width = 0.8 / len(series)
    for ax, panel in zip(axes, panels, strict=True):
        part = data.filter(pl.col("panel") == panel)
        combos = list(dict.fromkeys(part["combination"].to_list()))
        x = np.arange(len(combos))
        for i, name in enumerate(series):
            rows = {r["combination"]: r for r in part.filter(pl.col("series") == name).iter_rows(named=True)}
            means = [rows[c]["mean"] for c in combos]
            stds = [rows[c]["std"] for c in combos]
            ax.bar(x + (i - 1) * width, means, width, yerr=stds, capsize=2, color=colors[i], label=name)
        ax.set_xticks(x, [c.replace("+", "+\n") if len(c) > 12 else c for c in combos])
        ax.set_ylabel("AUROC")
        lo = float((part["mean"] - part["std"]).min())
        ax.set_ylim(max(0.0, lo - 0.05), min(1.0, float((part["mean"] + part["std"]).max()) + 0.05))
        if panel:
            ax.set_title(panel)
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    return fig, data


# ----- curves (Figures 4-6) -----
def _curve_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return summarize(frame, ("panel", "series", "x")).select(list(CURVE_SCHEMA)).cast(CURVE_SCHEMA)


def _rate_points(runs: pl.DataFrame, complete: pl.DataFrame, series: str) -> pl.DataFrame:
    """Fold values at every rate of a series: the complete run at x = 0, then the missing runs."""
    return pl.concat([complete, runs]).with_columns(
        pl.lit(series).alias("series"), (pl.col("missing_rate") * 100).round(6).alias("x")
    )


def fig4_data(tidy: pl.DataFrame, metric: str = "auroc", variant: str = "omnifuse") -> pl.DataFrame:
    frame = tidy.filter((pl.col("metric") == metric) & (pl.col("variant") == variant))
    if frame.is_empty():
        raise ReportError(f"fig4: no {variant} runs among the runs")
    parts = []
    targets = _targets(frame)
    for dataset, task in targets:
        mine = frame.filter((pl.col("dataset") == dataset) & (pl.col("task") == task))
        full = max(sort_combos(mine["combo"].to_list()), key=lambda c: len(combo_parts(c)))
        mine = mine.filter(pl.col("combo") == full)
        complete = mine.filter(pl.col("setting") == COMPLETE)
        if complete.is_empty():
            raise ReportError(f"fig4: no complete {variant} run of {dataset}/{task} {full} (rate 0)")
        modes = [m for m in mine["missing_mode"].unique(maintain_order=True).to_list() if m]
        order = {m: i for i, m in enumerate([*modality_order([full]), "random"])}
        for mode in sorted(modes, key=lambda m: order.get(m, len(order))):
            label = "random" if mode == "random" else f"{mode} removed"
            runs = mine.filter(pl.col("missing_mode") == mode)
            parts.append(
                _rate_points(runs, complete, label).with_columns(
                    pl.lit(_panel(dataset, task, full, len(targets) > 1)).alias("panel")
                )
            )
    if not parts:
        raise ReportError("fig4: no missing-rate runs among the runs")
    return _curve_rows(pl.concat(parts))


def imputation_data(
    tidy: pl.DataFrame, metric: str = "auroc", full_only: bool = False, mode: str = "random"
) -> pl.DataFrame:
    """Fig. 5 (every combination) / Fig. 6 (``full_only``): with vs without imputation."""
    frame = tidy.filter(pl.col("metric") == metric)
    parts = []
    targets = _targets(frame)
    names = {"omnifuse": "with imputation", "omnifuse-noimp": "without imputation"}
    for dataset, task in targets:
        mine = frame.filter((pl.col("dataset") == dataset) & (pl.col("task") == task))
        combos = [c for c in sort_combos(mine["combo"].to_list()) if len(combo_parts(c)) >= 2]
        if full_only and combos:
            combos = [max(combos, key=lambda c: len(combo_parts(c)))]
        for combo in combos:
            for variant, series in names.items():
                runs = mine.filter((pl.col("combo") == combo) & (pl.col("variant") == variant))
                complete = runs.filter(pl.col("setting") == COMPLETE)
                missing = runs.filter(pl.col("missing_mode") == mode)
                if runs.is_empty():
                    continue
                if complete.is_empty():
                    raise ReportError(f"no complete {variant} run of {dataset}/{task} {combo} (rate 0)")
                parts.append(
                    _rate_points(missing, complete, series).with_columns(
                        pl.lit(_panel(dataset, task, combo, len(targets) > 1)).alias("panel")
                    )
                )
    if not parts:
        raise ReportError("no omnifuse / omnifuse-noimp runs of a multi-modality combination")
    return _curve_rows(pl.concat(parts))


def plot_curves(data: pl.DataFrame, style: ReportStyle, xlabel: str, ylabel: str, max_cols: int = 4) -> Any:
    plt = _pyplot(style)
    panels = list(dict.fromkeys(data["panel"].to_list()))
    series = list(dict.fromkeys(data["series"].to_list()))
    colors = dict(zip(series, _colors(style, len(series)), strict=True))
    fig, axes = _grid(plt, style, len(panels), max_cols)
    for ax, panel in zip(axes, panels, strict=True):
        part = data.filter(pl.col("panel") == panel)
        for name in series:
            s = part.filter(pl.col("series") == name).sort("x")
            if s.is_empty():
                continue
            x, m, sd = s["x"].to_numpy(), s["mean"].to_numpy(), s["std"].to_numpy()
            ax.plot(
                x, m, marker="o", lw=style.line_width, ms=style.marker_size, color=colors[name], label=name
            )
            ax.fill_between(x, m - sd, m + sd, color=colors[name], alpha=style.band_alpha, lw=0)
        ax.set_xlabel(xlabel)
        if panel:
            ax.set_title(panel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(loc="lower left")
    fig.tight_layout()
    return fig


def fig4(tidy: pl.DataFrame, style: ReportStyle = DEFAULT_STYLE) -> tuple[Any, pl.DataFrame]:
    data = fig4_data(tidy)
    return plot_curves(data, style, "missing rate (%)", "AUROC"), data


def fig5(tidy: pl.DataFrame, style: ReportStyle = DEFAULT_STYLE) -> tuple[Any, pl.DataFrame]:
    data = imputation_data(tidy)
    return plot_curves(data, style, "missing rate (%)", "AUROC"), data


def fig6(tidy: pl.DataFrame, style: ReportStyle = DEFAULT_STYLE) -> tuple[Any, pl.DataFrame]:
    data = imputation_data(tidy, full_only=True)
    return plot_curves(data, style, "missing rate (%)", "AUROC"), data


# ----- Figure 7 -----
def fig7_data(history: pl.DataFrame) -> pl.DataFrame:
    """Per-epoch mean ± std over folds: panel ``imputation similarity`` (``imp_cos`` as "all
    modalities", ``imp_cos_<m>`` as <m>), panel ``imputation R²`` (the centred measure: ``imp_r2`` and
    ``imp_r2_<m>``, when the history has them) and panel ``validation AUROC`` (``val_auroc``)."""
    if "imp_cos" not in history.columns:
        raise ReportError(
            "fig7: the run's history has no imputation similarity (imp_cos); use an OmniFuse run with "
            "forward imputation"
        )
    if "val_auroc" not in history.columns:
        raise ReportError("fig7: the run's history has no val_auroc column")
    columns: list[tuple[str, str, str]] = [("imputation similarity", "imp_cos", "all modalities")]
    columns += [
        ("imputation similarity", c, c.removeprefix("imp_cos_"))
        for c in history.columns
        if c.startswith("imp_cos_")
    ]
    if "imp_r2" in history.columns:
        columns.append(("imputation R²", "imp_r2", "all modalities"))
        columns += [
            ("imputation R²", c, c.removeprefix("imp_r2_"))
            for c in history.columns
            if c.startswith("imp_r2_")
        ]
    columns.append(("validation AUROC", "val_auroc", "validation AUROC"))
    parts = [
        history.select(
            pl.lit(panel).alias("panel"), pl.lit(series).alias("series"),
            pl.col("epoch").cast(pl.Float64).alias("x"), pl.col("fold"),
            pl.col(col).cast(pl.Float64).alias("value"),
        ).filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan())
        for panel, col, series in columns
    ]  # fmt: skip
    return _curve_rows(pl.concat(parts))


def fig7(history: pl.DataFrame, style: ReportStyle = DEFAULT_STYLE) -> tuple[Any, pl.DataFrame]:
    data = fig7_data(history)
    plt = _pyplot(style)
    panels = [
        ("imputation similarity", "cosine similarity\n(imputed vs true)"),
        ("imputation R²", "centred R²\n(imputed vs true)"),
        ("validation AUROC", "validation AUROC"),
    ]
    panels = [p for p in panels if p[0] in set(data["panel"].to_list())]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(style.fig_width, style.fig_height * 0.8 * len(panels)), sharex=True
    )
    for ax, (panel, ylabel) in zip(axes, panels, strict=True):
        part = data.filter(pl.col("panel") == panel)
        series = list(dict.fromkeys(part["series"].to_list()))
        for color, name in zip(_colors(style, len(series)), series, strict=True):
            s = part.filter(pl.col("series") == name).sort("x")
            x, m, sd = s["x"].to_numpy(), s["mean"].to_numpy(), s["std"].to_numpy()
            lw = style.line_width * (1.5 if name == "all modalities" else 1.0)
            ax.plot(x, m, lw=lw, color=color, label=name)
            ax.fill_between(x, m - sd, m + sd, color=color, alpha=style.band_alpha, lw=0)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(loc="lower right")
    axes[-1].set_xlabel("epoch")
    fig.tight_layout()
    return fig, data


def label(variant: str) -> str:
    return METHOD_LABELS.get(variant, variant)


__all__: Sequence[str] = (
    "fig2", "fig2_data", "fig4", "fig4_data", "fig5", "fig6", "fig7", "fig7_data", "imputation_data",
    "plot_curves",
)  # fmt: skip
