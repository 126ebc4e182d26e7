"""Fold metrics of many runs → one tidy long frame (one row per run, fold and metric).

Columns (:data:`TIDY_COLUMNS`): ``dataset, task, variant, label, combo, setting, missing_mode,
missing_rate, fold, metric, value``; ``label`` is the method's display name
(:data:`omnifuse.workflow.plan.METHOD_LABELS`), ``missing_mode`` is empty for ``complete`` runs, and
``metric`` is ``auroc`` or ``auprc`` (the per-fold test scores of ``fold{k}/metrics.json``).

A run's folds are those its ``summary.json`` lists plus every ``fold{k}/`` directory; each must hold a
readable ``metrics.json`` with finite values, and every run given to one call must have the same folds
(the tables pair methods fold by fold).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from omnifuse.formats.run import Run
from omnifuse.report.runs import parse_run_dir
from omnifuse.workflow.plan import METHOD_LABELS

METRICS = ("auroc", "auprc")
TIDY_COLUMNS = (
    "dataset", "task", "variant", "label", "combo", "setting", "missing_mode", "missing_rate", "fold",
    "metric", "value",
)  # fmt: skip
TIDY_SCHEMA = {
    "dataset": pl.String, "task": pl.String, "variant": pl.String, "label": pl.String, "combo": pl.String,
    "setting": pl.String, "missing_mode": pl.String, "missing_rate": pl.Float64, "fold": pl.Int64,
    "metric": pl.String, "value": pl.Float64,
}  # fmt: skip
FOLD_DIR = re.compile(r"^fold(\d+)$")


class ReportError(ValueError):
    """Run outputs that cannot be reported (missing or corrupt files, NaN values, inconsistent folds)."""


def method_label(variant: str) -> str:
    return METHOD_LABELS.get(variant, variant)


def run_folds(run_dir: Path) -> list[int]:
    """Folds a run directory should have: ``summary.json``'s list plus every ``fold{k}/`` directory."""
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: run directory not found")
    folds = {int(m.group(1)) for p in run_dir.iterdir() if p.is_dir() and (m := FOLD_DIR.match(p.name))}
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            listed = json.loads(summary.read_text()).get("folds") or []
            folds.update(int(k) for k in listed)
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ReportError(f"{summary}: corrupt summary ({exc})") from exc
    if not folds:
        raise ReportError(f"{run_dir}: no fold*/ directories and no summary.json listing folds")
    return sorted(folds)


def read_fold_metrics(run_dir: Path, fold: int, metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """The test metrics of one fold, checked: file present, valid JSON, finite numbers."""
    path = run_dir / f"fold{fold}" / "metrics.json"
    if not path.is_file():
        raise ReportError(f"{path}: missing (fold {fold} of run {run_dir} is incomplete)")
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: corrupt metrics file ({exc})") from exc
    if not isinstance(payload, dict):
        raise ReportError(f"{path}: corrupt metrics file (not a JSON object)")
    out: dict[str, float] = {}
    for key in metrics:
        value = payload.get(key)
        if value is None and key in payload:
            raise ReportError(f"{path}: {key} is NaN (stored as null); the fold has no usable score")
        if value is None:
            raise ReportError(f"{path}: no {key!r} value")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ReportError(f"{path}: {key} = {value!r} is not a number") from exc
        if not math.isfinite(number):
            raise ReportError(f"{path}: {key} = {number} is not finite")
        out[key] = number
    return out


def _run_rows(run: Run, run_dir: Path, folds: Sequence[int], metrics: Sequence[str]) -> list[dict[str, Any]]:
    mode, rate = run.missing
    rows = []
    for fold in folds:
        values = read_fold_metrics(run_dir, fold, metrics)
        for metric in metrics:
            rows.append(
                {
                    "dataset": run.dataset, "task": run.task, "variant": run.variant,
                    "label": method_label(run.variant), "combo": run.combo, "setting": run.setting,
                    "missing_mode": mode or "", "missing_rate": rate, "fold": fold, "metric": metric,
                    "value": values[metric],
                }
            )  # fmt: skip
    return rows


def collect(
    run_dirs: Iterable[str | Path], metrics: Sequence[str] = METRICS, same_folds: bool = True
) -> pl.DataFrame:
    """Tidy long frame of the runs' fold metrics (module docstring), in the order the runs are given."""
    rows: list[dict[str, Any]] = []
    seen: dict[Run, Path] = {}
    reference: tuple[Path, list[int]] | None = None
    for raw in run_dirs:
        run_dir = Path(raw)
        run = parse_run_dir(run_dir)
        if run in seen:
            if seen[run].resolve() != run_dir.resolve():
                raise ReportError(f"{run_dir} and {seen[run]} are the same run {run}")
            continue
        seen[run] = run_dir
        folds = run_folds(run_dir)
        if same_folds and reference is not None and folds != reference[1]:
            raise ReportError(
                f"runs disagree on folds: {run_dir} has folds {folds}, {reference[0]} has {reference[1]}"
            )
        reference = reference or (run_dir, folds)
        rows.extend(_run_rows(run, run_dir, folds, metrics))
    if not rows:
        raise ReportError("no runs given")
    return pl.DataFrame(rows, schema=TIDY_SCHEMA)


def read_histories(run_dir: str | Path) -> pl.DataFrame:
    """Every fold's ``history.parquet`` of one run, stacked with a ``fold`` column."""
    run_dir = Path(run_dir)
    frames = []
    for fold in run_folds(run_dir):
        path = run_dir / f"fold{fold}" / "history.parquet"
        if not path.is_file():
            raise ReportError(f"{path}: missing (fold {fold} of run {run_dir} is incomplete)")
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises several kinds for a damaged file
            raise ReportError(f"{path}: corrupt history file ({exc})") from exc
        if "epoch" not in frame.columns:
            raise ReportError(f"{path}: no 'epoch' column")
        frames.append(frame.with_columns(pl.lit(fold, dtype=pl.Int64).alias("fold")))
    return pl.concat(frames, how="diagonal_relaxed")


def parse_expected_data(items: Sequence[str]) -> dict[str, str]:
    """``["mimic=synthetic", "lung=real"]`` → ``{"mimic": "synthetic", "lung": "real"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, origin = item.partition("=")
        if not sep or origin not in ("synthetic", "real"):
            raise ValueError(f"--expect-data expects DATASET=synthetic|real, got {item!r}")
        out[name] = origin
    return out


def recorded_origin(run_dir: Path) -> tuple[str, str]:
    """(dataset, ``synthetic`` | ``real``) of the cohort a run read, from its summary.json (as the
    cohort builder found it, not as any config says)."""
    path = run_dir / "summary.json"
    try:
        cohort = json.loads(path.read_text(encoding="utf-8"))["config"]["inputs"]["cohort"]
        synthetic = cohort["synthetic"]
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: missing (the run is incomplete)") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ReportError(
            f"{path}: records no data origin (config.inputs.cohort.synthetic; written by an older "
            "omnifuse): retrain the run"
        ) from exc
    if synthetic is None:
        raise ReportError(f"{path}: the run's cohort records no data origin (rebuild the cohort, retrain)")
    return str(cohort.get("dataset")), "synthetic" if synthetic else "real"


def check_data_origin(run_dirs: Iterable[str | Path], expected: dict[str, str]) -> None:
    """:class:`ReportError` naming the run, the dataset and both values unless every run's recorded data
    origin is the one its caption states (``expected``: dataset → synthetic | real)."""
    if not expected:
        return
    for raw in run_dirs:
        run_dir = Path(raw)
        dataset, origin = recorded_origin(run_dir)
        want = expected.get(dataset)
        if want is None:
            raise ReportError(f"{run_dir}: read dataset {dataset!r}, which the caption does not state")
        if origin != want:
            raise ReportError(
                f"{run_dir}: the caption states {want} data for dataset {dataset!r}, but the run read "
                f"{origin} data (its cohort's sources); the tables would be mislabelled"
            )
