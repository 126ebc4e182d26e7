"""Fake training run directories for the stage-3 report tests, written with the real run writers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omnifuse.experiments import Run
from omnifuse.train.outputs import history_frame, summarize_run, write_json, write_parquet


def make_run(
    root: Path,
    run: Run,
    auroc: Sequence[float],
    auprc: Sequence[float] | None = None,
    history: Sequence[Sequence[Mapping[str, Any]]] | None = None,
) -> Path:
    """``root/<run.dir>`` with fold{k}/metrics.json (and history.parquet) and summary.json."""
    run_dir = root / run.dir
    auprc = auprc if auprc is not None else [a - 0.2 for a in auroc]
    for k, (a, p) in enumerate(zip(auroc, auprc, strict=True)):
        fold = run_dir / f"fold{k}"
        fold.mkdir(parents=True, exist_ok=True)
        rows = list(history[k]) if history is not None else [{"epoch": 1, "val_auroc": a}]
        write_parquet(fold / "history.parquet", history_frame(rows))
        write_json(
            fold / "metrics.json",
            {"fold": k, "auroc": a, "auprc": p, "method": run.variant, "combo": run.combo},
        )
    summarize_run(run_dir)
    return run_dir
