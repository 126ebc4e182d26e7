"""Signal budget of the demo cohorts: how much of each modality's signal reaches the trained models.

For every dataset, task and modality, side by side:

(a) oracle   a standardised logistic regression on the LATENT truth the synthetic generator rendered that
             modality from (``latent_views`` of the dataset's generator module; synthetic data only), plus
             an "all" row on the latent truth of every modality together: the modalities are
             complementary when it beats the best single oracle by >= 0.03;
(b) pooled   a standardised logistic regression on the pooled feature cache (the mean over the valid rows
             of a sequence cache: EHR time steps, report tokens; image caches have one row);
(c) trained  the trained unimodal model (``omnifuse.train.train(..., method="unimodal", combo=m)``) with
             the demo's ``train`` settings (with the dataset's ``train.<task>`` settings over them, as the
             workflow's runs of that task) and ``encoders`` settings, 5-fold mean ± std.

Every column uses the paired cohort (samples having every modality of the task: the tables'
``cohort_mode: paired``) and the cohort's own patient-level folds. AUROC is binary for IHM, the macro
average over labels for phenotyping and the macro one-vs-rest average for the 3-class lung task (the
trainer's metric, ``omnifuse.metrics.auroc``). The logistic regressions are L2-regularised (scikit-learn's
objective, fitted for all labels at once by L-BFGS); C is chosen on the training folds only
(leave-one-training-fold-out), so no test fold ever informs a choice.

(c) normalises its input as every training run does by default (``train.normalize``: the EHR's
continuous channels and every channel of the image and token caches z-scored with statistics of the
fold's training part).

    .venv/bin/python bench/signal_budget.py                          # every dataset and task, (a)-(c)
    .venv/bin/python bench/signal_budget.py --datasets mimic --tasks ihm --no-train
    .venv/bin/python bench/signal_budget.py --markdown --json budget.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small fits: threads only contend

import numpy as np
import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The paper's Table 2 (uni-modality AUROC), the targets of the calibrated demo.
PAPER = {
    ("ihm", "ehr"): "0.83",
    ("ihm", "cxr"): "0.74",
    ("ihm", "rep"): "~0.70 (< cxr)",
    ("pheno", "ehr"): "0.71",
    ("pheno", "cxr"): "0.66",
    ("pheno", "rep"): "< cxr",
    ("subtype", "ct"): "0.83",
    ("subtype", "rep"): "0.80",
    ("subtype", "pet"): "< ct",
}
# dataset kind -> generator module under omnifuse.synth
GENERATORS = {"mimic": "mimic", "manifest": "lung"}
DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0)


# ----------------------------------------------------------------------------------------------------
# Logistic regression with the cohort's folds
# ----------------------------------------------------------------------------------------------------


def _fit_predict(
    x_train: np.ndarray,
    t_train: np.ndarray,
    x_test: np.ndarray,
    c: float,
    kind: str,
    n_out: int,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of a standardised L2 logistic regression, one column per problem of ``t_train``.

    The objective is scikit-learn's (``C * sum(log-loss) + ||w||^2 / 2``, intercept not penalised): one
    binary problem per label (multi-label) or a softmax over the classes (multi-class), all labels fitted
    together by L-BFGS (scipy, numpy gradients), much faster than one scikit-learn fit per label.
    Returns the test scores and the solution (a warm ``start`` for the next, larger C)."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_softmax

    mean, std = x_train.mean(0), x_train.std(0)
    std[std < 1e-8] = 1.0
    a = np.hstack([(x_train - mean) / std, np.ones((len(x_train), 1))])  # last column: intercept
    b = np.hstack([(x_test - mean) / std, np.ones((len(x_test), 1))])
    p = a.shape[1]
    if kind == "multiclass":
        onehot = np.eye(n_out)[t_train.astype(np.int64)]
    else:
        target = t_train.astype(np.float64)
    penalty = np.ones((p, 1))
    penalty[-1] = 0.0

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = flat.reshape(p, n_out)
        z = a @ w
        if kind == "multiclass":
            logp = log_softmax(z, axis=1)
            loss = -(onehot * logp).sum()
            grad_z = np.exp(logp) - onehot
        else:
            loss = (np.logaddexp(0.0, z) - target * z).sum()
            grad_z = expit(z) - target
        value = c * loss + 0.5 * (penalty * w * w).sum()
        grad = c * (a.T @ grad_z) + penalty * w
        return float(value), grad.ravel()

    x0 = np.zeros(p * n_out) if start is None else start
    result = minimize(objective, x0, jac=True, method="L-BFGS-B", options={"maxiter": 500, "gtol": 1e-5})
    return b @ result.x.reshape(p, n_out), result.x


def _train_targets(y: np.ndarray, kind: str) -> np.ndarray:
    if kind == "multiclass":
        return y.reshape(-1).astype(np.int64)
    return y.reshape(len(y), -1).astype(np.int8)


def _score(y: np.ndarray, scores: np.ndarray, kind: str) -> float:
    """AUROC of linear scores. Multi-class: of the softmax probabilities, as the trainer scores its
    models; one-vs-rest on the raw class scores would rank by another quantity (a class's score is not
    monotone in its probability)."""
    from scipy.special import softmax

    from omnifuse.metrics import auroc

    if kind == "multiclass":
        return auroc(y, softmax(scores, axis=1), kind)
    return auroc(y if kind != "binary" else y.reshape(-1), scores if kind != "binary" else scores[:, 0], kind)


def lr_fold_aurocs(
    x: np.ndarray, y: np.ndarray, folds: np.ndarray, kind: str, cs: Sequence[float] = DEFAULT_CS
) -> tuple[list[float], list[float]]:
    """Test AUROC of each outer fold and the C chosen for it.

    C maximises the AUROC of leave-one-training-fold-out predictions on the training folds (inner folds
    = the other outer folds); the model is then refit on every training fold and scored on the test
    fold. ``y`` is (N,) or (N, 1) for binary, (N, C) for multilabel, (N,) class indices for multiclass.
    """
    t = _train_targets(y, kind)
    n_out = int(t.max()) + 1 if kind == "multiclass" else t.shape[1]
    cs = sorted(cs)  # ascending: each fit starts from the previous, more regularised solution
    aurocs, chosen = [], []
    for k in np.unique(folds):
        train = folds != k
        rows = np.flatnonzero(train)
        pred = np.zeros((len(cs), len(rows), n_out))
        for j in np.unique(folds[train]):
            fit, held = folds[rows] != j, folds[rows] == j
            start = None
            for i, c in enumerate(cs):
                pred[i][held], start = _fit_predict(
                    x[rows[fit]], t[rows[fit]], x[rows[held]], c, kind, n_out, start
                )
        values = [_score(y[rows], pred[i], kind) for i in range(len(cs))]
        best_c = cs[int(np.argmax(values))]
        scores, _ = _fit_predict(x[train], t[train], x[~train], best_c, kind, n_out)
        aurocs.append(_score(y[~train], scores, kind))
        chosen.append(best_c)
    return aurocs, chosen


# ----------------------------------------------------------------------------------------------------
# Inputs: config, cohort, caches, latent views
# ----------------------------------------------------------------------------------------------------


def load_config(path: Path) -> dict[str, Any]:
    """The sections of the demo config this script reads. Keys the file leaves out take the trainer's
    dataclass defaults, which are the schema's defaults (the schemas are generated from them)."""
    config = yaml.safe_load(path.read_text()) or {}
    return {
        section: dict(config.get(section) or {}) for section in ("train", "encoders", "datasets", "synthetic")
    }


def generator_module(kind: str):
    """The synthetic generator module of a dataset kind (None when there is none): ``omnifuse.synth.<name>``
    of this checkout (``sys.path`` starts with it, ahead of any editable install of another checkout)."""
    name = GENERATORS.get(kind)
    if name is None:
        return None
    module = importlib.import_module(f"omnifuse.synth.{name}")
    if REPO not in Path(module.__file__).resolve().parents:
        print(f"# warning: {module.__name__} is {module.__file__}, not this checkout's", file=sys.stderr)
    return module


def synth_root(config: Mapping[str, Any], dataset: str, kind: str, given: Mapping[str, str]) -> Path | None:
    if dataset in given:
        return Path(given[dataset])
    synthetic = config["synthetic"]
    section = synthetic.get(dataset) or synthetic.get(GENERATORS.get(kind, ""))
    return Path(section["out"]) if section and section.get("out") else None


def latent_frames(module, root: Path | None) -> tuple[dict[str, pl.DataFrame] | None, str]:
    """``latent_views(root)`` of the generator, or None and the reason it is unavailable."""
    if module is None:
        return None, "no synthetic generator for this dataset kind"
    if not hasattr(module, "latent_views"):
        return None, f"{module.__name__} has no latent_views(): oracle skipped"
    if root is None or not root.exists():
        return None, f"generator output {root} not found: oracle skipped"
    return module.latent_views(root), ""


def pooled(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, L, D) cache rows → (N, D): the mean over the valid rows."""
    m = mask.astype(np.float64)[..., None]
    return (x.astype(np.float64) * m).sum(1) / np.maximum(m.sum(1), 1.0)


def latent_matrix(frame: pl.DataFrame, ids: np.ndarray) -> np.ndarray:
    """Numeric latent columns of ``frame`` in the order of ``ids`` (every id must have a row)."""
    frame = frame.with_columns(pl.col("sample_id").cast(pl.String))
    order = pl.DataFrame({"sample_id": [str(s) for s in ids]})
    joined = order.join(frame, on="sample_id", how="left", maintain_order="left")
    cols = [c for c in frame.columns if c != "sample_id"]
    values = joined.select(cols).cast(pl.Float64).to_numpy()
    missing = np.isnan(values).all(1)
    if missing.any():
        raise ValueError(f"latent view has no row for {int(missing.sum())} samples, e.g. {ids[missing][:3]}")
    return np.nan_to_num(values)


# ----------------------------------------------------------------------------------------------------
# One task
# ----------------------------------------------------------------------------------------------------


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def trained(
    cohort: Path,
    caches: Mapping[str, Path],
    modality: str,
    config: Mapping[str, Any],
    dataset: str,
    task: str,
    extra: Sequence[str],
    workers: int,
) -> dict[str, Any]:
    from omnifuse.train import train
    from omnifuse.workflow.runs import task_train

    train_cfg = task_train(config, dataset, task)  # what the workflow's runs of this task train with
    with tempfile.TemporaryDirectory(prefix="signal-budget-") as tmp:
        t0 = time.perf_counter()
        summary = train(
            cohort,
            {m: str(p) for m, p in caches.items()},
            method="unimodal",
            combo=modality,
            out_dir=Path(tmp),
            overrides=list(extra),
            train_config=train_cfg,
            method_config=dict(config["encoders"]),
            workers=workers,
        )
        epochs = [
            json.loads((Path(tmp) / f"fold{k}" / "metrics.json").read_text()).get("epochs_run")
            for k in summary["folds"]
        ]
    return {"folds": summary["auroc"]["folds"], "wall_s": time.perf_counter() - t0, "epochs": epochs}


def budget_task(
    dataset: str,
    task: str,
    ds: Mapping[str, Any],
    results: Path,
    latents: dict[str, pl.DataFrame] | None,
    args: argparse.Namespace,
    config: Mapping[str, Any],
) -> list[dict[str, Any]]:
    from omnifuse.train.data import load_run_data

    cohort = results / dataset / "cohorts" / f"{task}.parquet"
    modalities = [m for m in ds["modalities"] if not args.modalities or m in args.modalities]
    caches = {m: results / dataset / "features" / task / f"{m}.h5" for m in ds["modalities"]}
    missing = [str(p) for p in (cohort, *caches.values()) if not p.is_file()]
    if missing:
        print(f"# {dataset}/{task}: skipped, missing {', '.join(missing)}", file=sys.stderr)
        return []
    rows: list[dict[str, Any]] = []
    oracle_x: list[np.ndarray] = []
    base = None
    for m in modalities:
        data = load_run_data(cohort, caches, m, cohort_mode="paired")
        y, folds, kind = data.y.numpy(), data.folds, data.meta.kind
        if base is None:
            base = data
        row: dict[str, Any] = {"dataset": dataset, "task": task, "modality": m, "n": len(data)}
        row["positives_per_fold"] = (
            float(np.mean([y[folds == k].sum() for k in np.unique(folds)])) if kind == "binary" else None
        )
        if latents is not None and m in latents:
            xa = latent_matrix(latents[m], data.ids)
            oracle_x.append(xa)
            row["oracle"], row["oracle_c"] = lr_fold_aurocs(xa, y, folds, kind, args.cs)
        xb = pooled(data.x[m].float().numpy(), data.mask[m].numpy())
        row["pooled"], row["pooled_c"] = lr_fold_aurocs(xb, y, folds, kind, args.cs)
        if args.train:
            run = trained(cohort, caches, m, config, dataset, task, args.set, args.workers)
            row["trained"], row["train_wall_s"], row["epochs"] = run["folds"], run["wall_s"], run["epochs"]
        row["paper"] = PAPER.get((task, m), "")
        rows.append(row)
        _print_row(row)
    if base is not None and len(oracle_x) > 1:
        y, folds, kind = base.y.numpy(), base.folds, base.meta.kind
        aurocs, cs = lr_fold_aurocs(np.concatenate(oracle_x, axis=1), y, folds, kind, args.cs)
        row = {"dataset": dataset, "task": task, "modality": "all", "n": len(base), "oracle": aurocs}
        row["oracle_c"] = cs
        best = max(_mean_std(r["oracle"])[0] for r in rows if "oracle" in r)
        row["best_single_oracle"] = best
        row["complementary"] = _mean_std(aurocs)[0] >= best + 0.03
        rows.append(row)
        _print_row(row)
    return rows


# ----------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------

HEADER = (
    "dataset",
    "task",
    "modality",
    "n",
    "pos/fold",
    "(a) oracle",
    "(b) LR pooled",
    "(c) trained",
    "c-b",
    "paper",
)


def _cell(values: Sequence[float] | None) -> str:
    if not values:
        return "-"
    mean, std = _mean_std(values)
    return f"{mean:.3f} ± {std:.3f}"


def _cells(row: Mapping[str, Any]) -> list[str]:
    gap = "-"
    if row.get("trained") and row.get("pooled"):
        gap = f"{_mean_std(row['trained'])[0] - _mean_std(row['pooled'])[0]:+.3f}"
    paper = row.get("paper", "")
    if row["modality"] == "all":
        verdict = "complementary" if row.get("complementary") else "NOT complementary"
        paper = f"best single + 0.03 = {row['best_single_oracle'] + 0.03:.3f}: {verdict}"
    ppf = row.get("positives_per_fold")
    return [
        row["dataset"],
        row["task"],
        row["modality"],
        str(row["n"]),
        f"{ppf:.0f}" if ppf is not None else "-",
        _cell(row.get("oracle")),
        _cell(row.get("pooled")),
        _cell(row.get("trained")),
        gap,
        paper,
    ]


def _print_row(row: Mapping[str, Any]) -> None:
    print("  " + " | ".join(_cells(row)), file=sys.stderr, flush=True)


def table(rows: Sequence[Mapping[str, Any]], markdown: bool) -> str:
    body = [_cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in body)])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(HEADER)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*HEADER), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in body)]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "config/config.yaml", help="demo config")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results directory")
    parser.add_argument("--datasets", nargs="*", default=None, help="dataset names (default: all)")
    parser.add_argument("--tasks", nargs="*", default=None, help="tasks (default: each dataset's)")
    parser.add_argument("--modalities", nargs="*", default=None, help="modalities (default: all)")
    parser.add_argument(
        "--synth-root", nargs="*", default=[], metavar="DATASET=PATH",
        help="generator output per dataset (default: synthetic.<name>.out of the config)",
    )  # fmt: skip
    parser.add_argument("--no-train", dest="train", action="store_false", help="skip (c), the trained model")
    parser.add_argument("--workers", type=int, default=1, help="folds trained in parallel processes for (c)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for (c)")
    parser.add_argument(
        "--cs", nargs="*", type=float, default=list(DEFAULT_CS), help="grid of C for (a), (b)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--json", type=Path, default=None, help="also write every fold's numbers here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", message=".*lbfgs failed to converge.*")

    config = load_config(args.config)
    roots = dict(item.split("=", 1) for item in args.synth_root)
    rows: list[dict[str, Any]] = []
    for name, ds in config["datasets"].items():
        if args.datasets and name not in args.datasets:
            continue
        if not ds.get("enabled", True) and not args.datasets:
            continue
        module = generator_module(ds["kind"])
        latents, reason = latent_frames(module, synth_root(config, name, ds["kind"], roots))
        if reason:
            print(f"# {name}: {reason}", file=sys.stderr)
        for task in ds["tasks"]:
            if args.tasks and task not in args.tasks:
                continue
            rows.extend(budget_task(name, task, ds, args.results, latents, args, config))
    if not rows:
        print(
            "signal_budget: nothing to report (no dataset, task and modality with a cohort and its caches "
            f"under {args.results}; see the lines above)",
            file=sys.stderr,
        )
        return 1
    print(table(rows, args.markdown))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
