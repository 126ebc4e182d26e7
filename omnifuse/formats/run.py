"""The run directory: where one training run lives and what it holds (each file written atomically).

A *run* is one method variant, cross-validated on one dataset/task with one modality combination and
one simulated-missingness setting (:class:`Run`); it lives in
``results/{dataset}/runs/{task}/{variant}/{combo}/{setting}/``, where ``combo`` is the input modalities
joined by ``+`` and ``setting`` is ``complete`` (natural availability only) or ``missing-{mode}-{pct}``
(each sample loses the named modality, or one random modality, with probability pct/100).

``{run_dir}/fold{k}/``

* ``predictions.parquet``: ``sample_id``, ``patient_id``, ``fold``, the labels and scores, and
  ``observed_<m>`` / ``imputed_<m>`` per modality. Binary: ``y_true``, ``y_score``. Multi-label:
  ``y_true_<label>``, ``y_score_<label>`` per label column ``y_<label>``. Multi-class: ``y_true`` (class
  index) and ``y_score_<class>`` per class name. The parquet metadata key ``omnifuse.predictions`` holds
  the task kind, label names and score columns (:func:`read_predictions` returns arrays);
* ``metrics.json``: test AUROC / AUPRC (per label or class too), best epoch, sizes, timings; written
  last, so its presence marks a complete fold;
* ``history.parquet``: one row per epoch: every loss term (``loss_<term>``), ``val_auroc``,
  ``val_auprc``, ``val_loss``, the method's epoch values (OmniFuse: ``lazy``, the combination chosen by
  TLA, ``tla_D_<combo>``, ``imp_cos`` and ``imp_cos_<m>``), timings;
* ``checkpoint.pt``: the model and everything that rebuilds it (:mod:`omnifuse.formats.checkpoint`), and
  ``checkpoint.pt.sha256`` beside it (also in ``metrics.json`` and ``summary.json``), checked on load.

``{run_dir}/summary.json``: mean ± std (ddof = 1) of AUROC and AUPRC over the folds present in the run
directory, per-fold values, each fold's checkpoint sha256, and the configuration (with the provenance
of the cohort and caches the run read: ``config["inputs"]``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from omnifuse.formats.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from omnifuse.formats.cohort import CohortMeta
from omnifuse.metrics import summarize_folds

COMPLETE = "complete"

PRED_KEY = "omnifuse.predictions"


def setting_name(mode: str | None, rate: float) -> str:
    if not mode or rate == 0:
        return COMPLETE
    return f"missing-{mode}-{round(rate * 100):02d}"


def parse_setting(setting: str) -> tuple[str | None, float]:
    """``complete`` -> (None, 0.0); ``missing-ehr-30`` -> ("ehr", 0.3)."""
    if setting == COMPLETE:
        return None, 0.0
    parts = setting.split("-")
    if len(parts) != 3 or parts[0] != "missing" or not parts[2].isdigit():
        raise ValueError(f"bad run setting {setting!r}: expected 'complete' or 'missing-<mode>-<pct>'")
    return parts[1], int(parts[2]) / 100.0


def combo_name(modalities: Iterable[str]) -> str:
    return "+".join(modalities)


@dataclass(frozen=True)
class Run:
    dataset: str
    task: str
    variant: str
    combo: str
    setting: str = COMPLETE

    @property
    def dir(self) -> str:
        return f"results/{self.dataset}/runs/{self.task}/{self.variant}/{self.combo}/{self.setting}"

    @property
    def summary(self) -> str:
        return f"{self.dir}/summary.json"

    @property
    def missing(self) -> tuple[str | None, float]:
        return parse_setting(self.setting)


def safe_name(name: str) -> str:
    """A label or class name as a column suffix (letters, digits, '_', '-', '.')."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(name)).strip("_") or "x"


def score_columns(meta: CohortMeta) -> tuple[list[str], list[str]]:
    """(y_true columns, y_score columns) of a predictions table for this task."""
    if meta.kind == "binary":
        return ["y_true"], ["y_score"]
    if meta.kind == "multilabel":
        keys = [safe_name(c[2:]) for c in meta.label_columns]
        return [f"y_true_{k}" for k in keys], [f"y_score_{k}" for k in keys]
    return ["y_true"], [f"y_score_{safe_name(n)}" for n in meta.label_names]


def label_columns_frame(meta: CohortMeta, y: np.ndarray | None, n: int) -> dict[str, Any]:
    true_cols, _ = score_columns(meta)
    if y is None:
        return {}
    if meta.kind == "binary":
        return {"y_true": np.asarray(y).reshape(n).astype(np.int8)}
    if meta.kind == "multiclass":
        return {"y_true": np.asarray(y).reshape(n).astype(np.int64)}
    return {c: np.asarray(y)[:, j].astype(np.int8) for j, c in enumerate(true_cols)}


def score_frame(meta: CohortMeta, probs: np.ndarray, prefix: str = "") -> dict[str, np.ndarray]:
    _, score_cols = score_columns(meta)
    probs = np.asarray(probs, dtype=np.float64).reshape(probs.shape[0], -1)
    return {prefix + c: probs[:, j] for j, c in enumerate(score_cols)}


def predictions_table(
    meta: CohortMeta,
    sample_ids: np.ndarray,
    probs: np.ndarray,
    modalities: tuple[str, ...],
    *,
    y: np.ndarray | None = None,
    patient_ids: np.ndarray | None = None,
    fold: int | None = None,
    observed: np.ndarray | None = None,
    imputed: np.ndarray | None = None,
    head_probs: np.ndarray | None = None,
    head_mask: np.ndarray | None = None,
) -> pl.DataFrame:
    n = len(sample_ids)
    cols: dict[str, Any] = {"sample_id": np.asarray(sample_ids).astype(str)}
    if patient_ids is not None:
        cols["patient_id"] = np.asarray(patient_ids).astype(str)
    if fold is not None:
        cols["fold"] = np.full(n, fold, dtype=np.int64)
    cols.update(label_columns_frame(meta, y, n))
    cols.update(score_frame(meta, probs))
    for j, m in enumerate(modalities):
        if observed is not None:
            cols[f"observed_{m}"] = np.asarray(observed[:, j], dtype=bool)
        if imputed is not None:
            cols[f"imputed_{m}"] = np.asarray(imputed[:, j], dtype=bool)
    if head_probs is not None:
        for j, m in enumerate(modalities):
            probs_m = head_probs[:, j]
            if head_mask is not None:
                probs_m = np.where(head_mask[:, j : j + 1], probs_m, np.nan)
            cols.update(score_frame(meta, probs_m, prefix=f"head_{m}_"))
    return pl.DataFrame(cols)


def predictions_metadata(meta: CohortMeta, modalities: tuple[str, ...]) -> dict[str, str]:
    true_cols, score_cols = score_columns(meta)
    info = {
        "kind": meta.kind,
        "label_names": list(meta.label_names),
        "label_columns": list(meta.label_columns),
        "y_true_columns": true_cols,
        "y_score_columns": score_cols,
        "modalities": list(modalities),
        "dataset": meta.dataset,
        "task": meta.task,
    }
    return {PRED_KEY: json.dumps(info, sort_keys=True)}


def write_parquet(path: Path, frame: pl.DataFrame, metadata: Mapping[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, metadata=dict(metadata or {}))


def read_predictions(path: str | Path) -> tuple[pl.DataFrame, dict[str, Any], np.ndarray, np.ndarray]:
    """(table, metadata, y_true, y_score) of a predictions file, arrays in the shapes
    :func:`omnifuse.metrics.compute_metrics` takes."""
    path = Path(path)
    info = json.loads(pl.read_parquet_metadata(path)[PRED_KEY])
    frame = pl.read_parquet(path)
    y_true = frame.select(info["y_true_columns"]).to_numpy()
    y_score = frame.select(info["y_score_columns"]).to_numpy()
    if info["kind"] != "multilabel":
        y_true = y_true[:, 0]
    if info["kind"] == "binary":
        y_score = y_score[:, 0]
    return frame, info, y_true, y_score


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf → None, numpy scalars → Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(_clean(dict(payload)), indent=2, sort_keys=True) + "\n")


def history_frame(history: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.from_dicts(history, infer_schema_length=None) if history else pl.DataFrame({"epoch": []})


def write_fold(
    fold_dir: Path,
    *,
    predictions: pl.DataFrame,
    pred_metadata: Mapping[str, str],
    metrics: Mapping[str, Any],
    history: list[dict[str, Any]],
    checkpoint: bytes,
) -> None:
    """Write one fold's files (``checkpoint``: the bytes of :func:`omnifuse.formats.checkpoint.to_bytes`,
    with its sha256 beside it and in ``metrics.json``); ``metrics.json`` last (a fold without it is
    incomplete)."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    (fold_dir / "metrics.json").unlink(missing_ok=True)  # the completion marker goes last
    write_parquet(fold_dir / "predictions.parquet", predictions, pred_metadata)
    write_parquet(fold_dir / "history.parquet", history_frame(history))
    digest = hashlib.sha256(checkpoint).hexdigest()
    write_bytes_atomic(fold_dir / "checkpoint.pt", checkpoint)
    write_text_atomic(fold_dir / "checkpoint.pt.sha256", f"{digest}  checkpoint.pt\n")
    write_json(fold_dir / "metrics.json", {**metrics, "checkpoint_sha256": digest})


def summarize_run(run_dir: str | Path, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Summary over the folds present in ``run_dir`` (``fold*/metrics.json``), written to summary.json."""
    run_dir = Path(run_dir)
    folds = []
    for path in sorted(run_dir.glob("fold*/metrics.json"), key=lambda p: int(p.parent.name[4:] or 0)):
        folds.append(json.loads(path.read_text()))
    if not folds:
        raise FileNotFoundError(f"{run_dir}: no fold*/metrics.json to summarise")
    clean = [{k: (float("nan") if v is None else v) for k, v in f.items()} for f in folds]
    summary: dict[str, Any] = {
        **summarize_folds(clean),
        "folds": [f["fold"] for f in folds],
        "method": folds[0].get("method"),
        "combo": folds[0].get("combo"),
        "dataset": folds[0].get("dataset"),
        "task": folds[0].get("task"),
        "wall_s": float(sum(f.get("wall_s") or 0.0 for f in folds)),
        "best_epochs": [f.get("best_epoch") for f in folds],
        "checkpoint_sha256": [f.get("checkpoint_sha256") for f in folds],
    }
    if config is not None:
        summary["config"] = dict(config)
    write_json(run_dir / "summary.json", summary)
    return summary
