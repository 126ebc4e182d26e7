"""Benchmark: every stage-2 baseline (and OmniFuse, for reference) through the real ``omnifuse train``
command on an IHM-like three-modality cohort: 5-fold AUROC mean ± std and wall time per run.

Uses the demo caches when they exist (results/mimic/cohorts/ihm.parquet and
results/mimic/features/ihm/{ehr,cxr,rep}.h5), otherwise synthetic caches of the demo's shapes (EHR
(24, 76), CXR (1, 512), report tokens (150, 384); ~1,200 samples, 14 % positives; the generator of
bench/train_omnifuse.py), and says which. Every method runs on the combination ehr+cxr+rep; ``unimodal``
runs once per modality. Each run is one ``omnifuse train`` process (the CLI the workflow calls), timed
from start to exit (data loading, 5 folds, writing outputs), with ``--workers`` folds in parallel.

    .venv/bin/python bench/train_baselines.py                       # every method, 5 folds
    .venv/bin/python bench/train_baselines.py --methods sum pmr --folds 0 --max-epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_omnifuse import add_common_arguments, bench_inputs  # noqa: E402

BASELINES = ("unimodal", "concat", "sum", "se_gate", "gblend", "ogm_ge", "pmr", "medfuse")
MODALITIES = ("ehr", "cxr", "rep")


def omnifuse_command() -> list[str]:
    """The installed ``omnifuse`` entry point next to this Python, else ``python -m omnifuse.cli``."""
    exe = Path(sys.executable).parent / "omnifuse"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "omnifuse.cli"]


def runs_for(method: str) -> list[str]:
    return list(MODALITIES) if method == "unimodal" else ["+".join(MODALITIES)]


def run_cli(
    cohort: Path, caches: dict[str, Path], method: str, combo: str, out: Path, args: argparse.Namespace
) -> dict:
    cmd = [
        *omnifuse_command(),
        "train",
        "--folds", *[str(k) for k in args.folds],  # nargs="+": keep it before other options
        "--cohort", str(cohort),
        *[x for m, p in caches.items() for x in ("--cache", f"{m}={p}")],
        "--method", method,
        "--combo", combo,
        "--out", str(out),
        "--workers", str(args.workers),
        f"train.threads={args.threads}",
        f"train.max_epochs={args.max_epochs}",
        *args.set,
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{method} {combo} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    folds = [json.loads((out / f"fold{k}" / "metrics.json").read_text()) for k in args.folds]
    return {
        "method": method,
        "combo": combo,
        "auroc_mean": line["auroc"]["mean"],
        "auroc_std": line["auroc"]["std"],
        "auroc_folds": line["auroc"]["folds"],
        "auprc_mean": line["auprc"]["mean"],
        "auprc_std": line["auprc"]["std"],
        "wall_s": wall,
        "fold_wall_s": [f["wall_s"] for f in folds],
        "epochs": [f["epochs_run"] for f in folds],
        "best_epochs": [f["best_epoch"] for f in folds],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=[*BASELINES, "omnifuse"])
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fold process")
    parser.add_argument("--workers", type=int, default=2, help="folds trained in parallel processes")
    add_common_arguments(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cohort, caches, source = bench_inputs(root / "data", args.n)
        print(f"data: {source}; extra overrides: {' '.join(args.set) or 'none'}")
        print(
            f"{len(args.folds)} folds, {args.workers} fold worker(s) x {args.threads} thread(s), "
            f"max {args.max_epochs} epochs; load average before: {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        report: dict = {"source": source, "folds": args.folds, "workers": args.workers, "runs": []}
        for method in args.methods:
            for combo in runs_for(method):
                res = run_cli(cohort, caches, method, combo, root / "runs" / method / combo, args)
                report["runs"].append(res)
                print(
                    f"{method:9s} {combo:12s} AUROC {res['auroc_mean']:.4f} ± {res['auroc_std']:.4f}  "
                    f"AUPRC {res['auprc_mean']:.4f} ± {res['auprc_std']:.4f}  wall {res['wall_s']:7.1f} s  "
                    f"(sum of fold walls {sum(res['fold_wall_s']):.1f} s; epochs {res['epochs']}, "
                    f"best {res['best_epochs']})",
                    flush=True,
                )
        report["load_average_after"] = os.getloadavg()[0]
        print(f"load average after: {report['load_average_after']:.2f}")
        ref = next((r for r in report["runs"] if r["method"] == "concat"), None)
        if ref:
            print("wall-time ratio to concat (same run): " + ", ".join(
                f"{r['method']}[{r['combo']}] {r['wall_s'] / ref['wall_s']:.2f}" for r in report["runs"]
            ))  # fmt: skip
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
