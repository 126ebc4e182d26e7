"""Stage 2: one generic trainer for every fusion method, on cached embeddings.

Python API (the ``omnifuse train`` command calls the same function)::

    from omnifuse.train import train
    summary = train(
        "results/mimic/cohorts/ihm.parquet",
        {"ehr": ".../ehr.h5", "cxr": ".../cxr.h5", "rep": ".../rep.h5"},
        method="omnifuse", combo="ehr+cxr+rep", out_dir="results/mimic/runs/ihm/omnifuse/ehr+cxr+rep",
        overrides=["method.tla=false", "train.max_epochs=30"],
    )

Modules: :mod:`.config` (TrainConfig, overrides), :mod:`.data` (cohort + caches → tensors),
:mod:`.normalize` (per-fold input normalisation hook), :mod:`.missingness` (simulated missingness),
:mod:`.splits` (patient-level inner splits), :mod:`.loop` (one fold), :mod:`.outputs` (files).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from omnifuse.formats.checkpoint import to_bytes
from omnifuse.formats.run import (
    combo_name,
    predictions_metadata,
    predictions_table,
    summarize_run,
    write_fold,
)
from omnifuse.hostinfo import host_info
from omnifuse.methods.base import MethodConfig, config_from_dict
from omnifuse.methods.registry import method_class
from omnifuse.train.config import TrainConfig, load_config_file, split_overrides
from omnifuse.train.data import RunData, load_run_data
from omnifuse.train.loop import FitContext, FoldResult, fit_fold

log = logging.getLogger("omnifuse.train")

__all__ = [
    "FitContext",
    "FoldResult",
    "RunData",
    "TrainConfig",
    "all_defaults",
    "fit_fold",
    "load_run_data",
    "resolve_configs",
    "train",
]


def all_defaults() -> dict[str, Any]:
    """Every stage-2 default: ``{"train": {...}, "methods": {name: {...}}}`` (what a config schema for
    training mirrors; the dataclasses are the single source)."""
    from omnifuse.methods.registry import METHODS

    return {
        "train": TrainConfig().to_dict(),
        "methods": {name: cls.Config().to_dict() for name, cls in sorted(METHODS.items())},
    }


def write_fold_result(data: RunData, result: FoldResult, out_dir: Path) -> None:
    """Write one fold's predictions, metrics, history and checkpoint under ``out_dir/fold{k}``."""
    pred = result.predictions
    table = predictions_table(
        data.meta,
        data.ids[pred.idx],
        pred.probs,
        data.modalities,
        y=data.y[pred.idx].numpy(),
        patient_ids=data.patients[pred.idx],
        fold=result.fold,
        observed=pred.observed,
        imputed=pred.imputed,
    )
    write_fold(
        out_dir / f"fold{result.fold}",
        predictions=table,
        pred_metadata=predictions_metadata(data.meta, data.modalities),
        metrics=result.metrics,
        history=result.history,
        checkpoint=to_bytes(result.checkpoint),
    )
    log.info("wrote %s", out_dir / f"fold{result.fold}")


# the run data a fold worker loaded, kept for the next fold it trains (training never modifies it)
_WORKER_DATA: dict[str, RunData] = {}


def _fold_job(
    load_args: dict[str, Any], method: str, method_raw: dict, train_raw: dict, fold: int, out_dir: str
) -> None:
    """One fold in a worker process (spawned: it loads the data itself, once for all its folds)."""
    tcfg, mcfg = resolve_configs(method, train_config=train_raw, method_config=method_raw)
    key = json.dumps(load_args, sort_keys=True)
    if key not in _WORKER_DATA:
        _WORKER_DATA.clear()
        _WORKER_DATA[key] = load_run_data(**load_args)
    data = _WORKER_DATA[key]
    write_fold_result(data, fit_fold(data, method, mcfg, tcfg, fold), Path(out_dir))


def _worker_ready() -> None:
    """Nothing: submitted once per worker so that the workers start (and import torch) while the
    parent process is still reading the data."""


def _fold_workers(workers: int, folds: Sequence[int] | None) -> ProcessPoolExecutor | None:
    """The processes that train folds in parallel (None for one worker or one fold), started at once:
    each imports torch (~2 s) while the caller reads the data."""
    n = workers if folds is None else min(workers, len(folds))
    if n < 2:
        return None
    spawn = multiprocessing.get_context("spawn")  # never fork a process that holds torch threads
    pool = ProcessPoolExecutor(max_workers=n, mp_context=spawn)
    for _ in range(n):
        pool.submit(_worker_ready)
    return pool


def resolve_configs(
    method: str,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    method_config: MethodConfig | Mapping[str, Any] | None = None,
) -> tuple[TrainConfig, MethodConfig]:
    """Defaults ← ``train_config`` / ``method_config`` ← YAML ``config_file`` ← ``overrides``."""
    cls = method_class(method)
    train_raw = train_config.to_dict() if isinstance(train_config, TrainConfig) else dict(train_config or {})
    method_raw = (
        method_config.to_dict() if isinstance(method_config, MethodConfig) else dict(method_config or {})
    )
    if config_file is not None:
        t, m = load_config_file(config_file)
        train_raw.update(t)
        method_raw.update(m)
    t, m = split_overrides(
        overrides or [],
        [f.name for f in dataclasses.fields(TrainConfig)],
        [f.name for f in dataclasses.fields(cls.Config)],
    )
    train_raw.update(t)
    method_raw.update(m)
    return TrainConfig.from_dict(train_raw), config_from_dict(cls.Config, method_raw)


def train(
    cohort: str | Path,
    caches: Mapping[str, str | Path],
    method: str = "omnifuse",
    combo: str | Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    folds: Sequence[int] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    method_config: MethodConfig | Mapping[str, Any] | None = None,
    data: RunData | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Cross-validate ``method`` on the cohort's folds (all, or ``folds``); write every fold's outputs
    under ``out_dir/fold{k}/`` and the run summary ``out_dir/summary.json`` (when ``out_dir`` is given).
    Returns the summary (with the fold results under ``"results"``).

    ``workers`` > 1 trains folds in parallel processes (each with ``train.threads`` threads, started
    before the data is read here, and reading it once for all the folds it trains; results are identical
    to a sequential run, and are read back from ``out_dir``, so ``"results"`` is empty)."""
    tcfg, mcfg = resolve_configs(method, overrides, config_file, train_config, method_config)
    cls = method_class(method)
    pool = _fold_workers(workers, folds) if out_dir is not None else None
    with pool or nullcontext():
        if data is None:
            data = load_run_data(
                cohort,
                caches,
                combo,
                with_targets=cls.uses_imputation_targets(mcfg),
                cohort_mode=tcfg.cohort_mode,
                missing_rate=tcfg.missing_rate,
                missing_modality=tcfg.missing_modality,
                missing_seed=tcfg.missing_seed,
            )
        fold_list = list(range(data.meta.n_folds)) if folds is None else [int(k) for k in folds]
        bad = [k for k in fold_list if not 0 <= k < data.meta.n_folds]
        if bad:
            raise ValueError(f"folds {bad} are outside 0..{data.meta.n_folds - 1}")
        config = {
            "method": method,
            "combo": combo_name(data.inputs),
            "train": tcfg.to_dict(),
            "method_config": mcfg.to_dict(),
            "inputs": data.info.get("provenance", {}),  # the cohort and caches read (docs/design.md)
            "host": host_info(),  # the machine that trained
        }
        t0 = time.perf_counter()
        results: list[FoldResult] = []
        if workers > 1 and len(fold_list) > 1:
            if out_dir is None:
                raise ValueError("parallel folds (workers > 1) write their results: give out_dir")
            load_args = {
                "cohort": str(cohort),
                "caches": {m: str(p) for m, p in caches.items()},
                "combo": list(data.inputs),
                "with_targets": cls.uses_imputation_targets(mcfg),
                "cohort_mode": tcfg.cohort_mode,
                "missing_rate": tcfg.missing_rate,
                "missing_modality": tcfg.missing_modality,
                "missing_seed": tcfg.missing_seed,
            }
            assert pool is not None  # started above whenever workers > 1 and out_dir is given
            jobs = [
                pool.submit(_fold_job, load_args, method, mcfg.to_dict(), tcfg.to_dict(), k, str(out_dir))
                for k in fold_list
            ]
            for job in jobs:
                job.result()
        else:
            for k in fold_list:
                result = fit_fold(data, method, mcfg, tcfg, k)
                results.append(result)
                if out_dir is not None:
                    write_fold_result(data, result, Path(out_dir))
        if out_dir is not None:
            summary = summarize_run(out_dir, config)
        else:
            from omnifuse.metrics import summarize_folds

            summary = {**summarize_folds([r.metrics for r in results]), "folds": fold_list, **config}
        summary["results"] = results
        summary["run_wall_s"] = time.perf_counter() - t0
        return summary
