"""Benchmark: stage-2 training speed of OmniFuse (and row (a), concatenation) on an IHM-like cohort.

Uses the demo caches when they exist (results/mimic/cohorts/ihm.parquet and
results/mimic/features/ihm/{ehr,cxr,rep}.h5), otherwise synthetic caches of the demo's shapes (EHR
(24, 76) 2-h steps, CXR (1, 512), report tokens (150, 384); ~1,200 samples, 14 % positives), and says
which. Prints, for each Table 4 row run: the 5-fold wall time, AUROC mean ± std, training throughput
(samples/s = epochs × training samples / time in training steps), and a breakdown of where the time
goes: training steps (split into encoders vs. the rest — CRA, heads, losses, optimizer — by timing both
on the same batch in the same process), TLA mining, imputation-similarity and validation passes.

    .venv/bin/python bench/train_omnifuse.py                   # rows f and a, 5 folds
    .venv/bin/python bench/train_omnifuse.py --rows f --threads 1 --folds 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from omnifuse.methods import ABLATIONS  # noqa: E402
from omnifuse.methods.registry import build_method  # noqa: E402
from omnifuse.synth.toy import ToySpec, make_toy_run  # noqa: E402
from omnifuse.train import load_run_data, resolve_configs, train  # noqa: E402
from omnifuse.train.loop import fit_normalizers, make_optimizer, resolve_precision  # noqa: E402

DEMO = REPO / "results" / "mimic"


def demo_inputs() -> tuple[Path, dict[str, Path]] | None:
    cohort = DEMO / "cohorts" / "ihm.parquet"
    caches = {m: DEMO / "features" / "ihm" / f"{m}.h5" for m in ("ehr", "cxr", "rep")}
    if cohort.is_file() and all(p.is_file() for p in caches.values()):
        return cohort, caches
    return None


def synthetic_inputs(root: Path, n: int) -> tuple[Path, dict[str, Path]]:
    spec = ToySpec(
        n=n,
        kind="binary",
        prevalence=0.14,
        shapes={"ehr": (24, 76), "cxr": (1, 512), "rep": (150, 384)},
        signal={"ehr": 1.0, "cxr": 0.5, "rep": 0.5},
        noise=3.0,
        seed=0,
    )
    return make_toy_run(root, spec)


def bench_inputs(root: Path, n: int) -> tuple[Path, dict[str, Path], str]:
    """The demo caches when they exist, else synthetic caches of their shapes; and which it is."""
    found = demo_inputs()
    if found:
        return (*found, f"demo caches under {DEMO}")
    cohort, caches = synthetic_inputs(root, n)
    return cohort, caches, f"synthetic caches of the demo's shapes ({n} samples; no demo caches under {DEMO})"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options both training benchmarks take."""
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--n", type=int, default=1200, help="synthetic cohort size (when no demo caches)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")


def time_step(model, batch, optimizer, what: str, autocast, repeats: int = 5) -> float:
    """Seconds per forward+backward of the encoders only, or of the whole model (+ optimizer step), in
    the trainer's precision (``autocast``)."""

    def once():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = (
                model.encoders(batch.x, batch.mask).float().sum() if what == "encoders" else model(batch).loss
            )
        loss.backward()
        if what != "encoders":
            optimizer.step()

    once()
    t0 = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - t0) / repeats


def step_breakdown(cohort, caches, row: str, threads: int, batch_size: int, extra=()) -> dict[str, float]:
    overrides = [f"method.{k}={str(v).lower()}" for k, v in ABLATIONS[row].items()]
    tcfg, mcfg = resolve_configs("omnifuse", [*overrides, f"train.threads={threads}", *extra])
    torch.set_num_threads(threads)
    precision = resolve_precision(tcfg, torch.device("cpu"))
    data = load_run_data(cohort, caches, None, with_targets=True)
    idx = torch.arange(min(batch_size, len(data)))
    from omnifuse.methods.base import ModelSpec

    spec = ModelSpec(data.modalities, data.inputs, data.shapes, data.meta.kind, data.meta.n_outputs)
    torch.manual_seed(0)
    model = build_method("omnifuse", spec, mcfg).train()
    normalizers = fit_normalizers(data, idx.numpy(), tcfg)
    batch = data.batch(idx, normalizers, targets=True, trim=model.encoders.length_invariant())
    opt = make_optimizer(model, tcfg)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    enc = time_step(model, batch, opt, "encoders", autocast)
    full = time_step(model, batch, opt, "full", autocast)
    per_modality = {}
    for m in data.modalities:
        x, mask = batch.x[m], batch.mask[m]

        def encode_backward(m=m, x=x, mask=mask):
            with autocast():
                out = model.encoders.encode(m, x, mask)
            out.float().sum().backward()

        encode_backward()
        t0 = time.perf_counter()
        for _ in range(3):
            encode_backward()
        per_modality[m] = (time.perf_counter() - t0) / 3
    return {
        "encoders_s": enc, "full_step_s": full, "per_modality_s": per_modality, "batch": len(idx),
        "precision": precision,
    }  # fmt: skip


def run_row(
    cohort, caches, row: str, folds, threads: int, workers: int, max_epochs: int, out: Path, extra=()
) -> dict:
    overrides = [f"method.{k}={str(v).lower()}" for k, v in ABLATIONS[row].items()]
    overrides += [f"train.threads={threads}", f"train.max_epochs={max_epochs}", *extra]
    t0 = time.perf_counter()
    summary = train(
        cohort, caches, "omnifuse", out_dir=out / row, folds=folds, overrides=overrides, workers=workers
    )
    wall = time.perf_counter() - t0
    hist, metrics = [], []
    for k in folds:
        hist.extend(pl.read_parquet(out / row / f"fold{k}" / "history.parquet").to_dicts())
        metrics.append(json.loads((out / row / f"fold{k}" / "metrics.json").read_text()))
    train_s = sum(r["time_train_s"] for r in hist)
    tla_s = sum(r.get("time_tla_s") or 0.0 for r in hist)
    epoch_end_s = sum(r["time_epoch_end_s"] for r in hist)
    val_s = sum(r["time_val_s"] for r in hist)
    samples = sum(m["epochs_run"] * m["n_train"] for m in metrics)
    cpu_s = sum(m["wall_s"] for m in metrics)
    return {
        "row": row,
        "folds": list(folds),
        "wall_s": wall,
        "fold_wall_s_sum": cpu_s,
        "auroc_mean": summary["auroc"]["mean"],
        "auroc_std": summary["auroc"]["std"],
        "auroc_folds": summary["auroc"]["folds"],
        "auprc_mean": summary["auprc"]["mean"],
        "epochs": [m["epochs_run"] for m in metrics],
        "best_epochs": [m["best_epoch"] for m in metrics],
        "train_samples_per_s": samples / train_s if train_s else float("nan"),
        "time_train_steps_s": train_s,
        "time_tla_mining_s": tla_s,
        "time_imputation_similarity_s": epoch_end_s - tla_s,
        "time_validation_s": val_s,
        "time_other_s": cpu_s - train_s - epoch_end_s - val_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=["f", "a"], choices=sorted(ABLATIONS))
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--workers", type=int, default=1, help="folds trained in parallel processes")
    add_common_arguments(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cohort, caches, source = bench_inputs(root / "data", args.n)
        print(f"data: {source}; extra overrides: {' '.join(args.set) or 'none'}")
        print(
            f"threads: {args.threads} per process, {args.workers} fold worker(s), "
            f"load average before: {os.getloadavg()[0]:.2f}"
        )
        report = {"source": source, "threads": args.threads, "workers": args.workers, "rows": []}
        for row in args.rows:
            res = run_row(
                cohort,
                caches,
                row,
                args.folds,
                args.threads,
                args.workers,
                args.max_epochs,
                root / "runs",
                args.set,
            )
            res["step"] = step_breakdown(cohort, caches, row, args.threads, 64, args.set)
            res["overrides"] = list(args.set)
            report["rows"].append(res)
            enc_share = res["step"]["encoders_s"] / res["step"]["full_step_s"]
            print(
                f"row ({row}) {len(args.folds)} folds: wall {res['wall_s']:.1f} s, "
                f"AUROC {res['auroc_mean']:.4f} ± {res['auroc_std']:.4f}, "
                f"epochs {res['epochs']} (best {res['best_epochs']}), "
                f"{res['train_samples_per_s']:.0f} training samples/s per process"
            )
            print(
                f"  breakdown: training steps {res['time_train_steps_s']:.1f} s (encoders ~{enc_share:.0%}: "
                f"{res['time_train_steps_s'] * enc_share:.1f} s; CRA + heads + losses + optimizer "
                f"~{1 - enc_share:.0%}: {res['time_train_steps_s'] * (1 - enc_share):.1f} s), "
                f"TLA mining {res['time_tla_mining_s']:.1f} s, imputation similarity "
                f"{res['time_imputation_similarity_s']:.1f} s, validation {res['time_validation_s']:.1f} s, "
                f"other (normalisation, test, checkpoints) {res['time_other_s']:.1f} s; sum over folds "
                f"{res['fold_wall_s_sum']:.1f} s"
            )
            per = ", ".join(f"{m} {1000 * t:.0f} ms" for m, t in res["step"]["per_modality_s"].items())
            print(
                f"  one batch of {res['step']['batch']} ({res['step']['precision']}): "
                f"full step {1000 * res['step']['full_step_s']:.0f} ms, "
                f"encoders {1000 * res['step']['encoders_s']:.0f} ms ({per})"
            )
        report["load_average_after"] = os.getloadavg()[0]
        print(f"load average after: {report['load_average_after']:.2f}")
        if len(report["rows"]) > 1:
            walls = [r["wall_s"] for r in report["rows"]]
            print(f"wall-time ratio row {args.rows[0]} / row {args.rows[1]}: {walls[0] / walls[1]:.2f}")
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
