"""Benchmark of the EHR stage on synthetic hospitals: peak memory against chartevents rows, time against
the I/O floor and against an older checkout of the code.

The EHR stage is ``omnifuse ehr extract`` (one scan of chartevents + labevents -> clean events) and
``omnifuse ehr features`` for ``ihm`` and ``pheno`` (discretized caches); ``omnifuse cohort`` runs once
per hospital to make the features' inputs and is not counted. Each step runs in its own process; its
peak memory is that process's max RSS and the stage's peak is the largest of its steps.

* Memory against rows: the stage runs on two hospitals (``--n-stays SMALL LARGE``, generated once with
  ``--filler-ratio`` rows of items that feed no variable per variable row, MIMIC-IV's ratio by default,
  so that chartevents has realistic row counts: ~5 M and ~50 M rows with the defaults). The script
  prints the peak at each size and the slope in MB per million chartevents rows.
* Time against the floor: polars scanning ``icu/chartevents.csv.gz`` and keeping the rows of the 17
  variables' item ids (every column, then the five columns the stage reads), on the large hospital.
* Time against older code (``--baseline DIR``: a checkout, e.g. ``git worktree add /tmp/ehr-old <commit>``):
  the same steps with ``PYTHONPATH=DIR``, alternating with the current code; the ratio of stage times.

Times are only comparable within one run (the machine is shared): runs alternate (``--repeat``), the
best time of each step is used, and the script prints ratios. Outputs and logs go under ``--work``.

    python bench/ehr_stage.py --work /tmp/ehr_bench --baseline /tmp/ehr-old --repeat 3
    python bench/ehr_stage.py --roots /data/small /data/large --work /tmp/ehr_bench --json result.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from omnifuse.cohorts.ehr.channels import items  # noqa: E402
from omnifuse.synth.mimic_events import MIMIC_IV_FILLER_RATIO  # noqa: E402

STAGE = ("ehr extract", "ehr features ihm", "ehr features pheno")

FLOOR = """
import sys, time, polars as pl
ids, columns = {ids!r}, {columns!r}
t = time.perf_counter()
scan = pl.scan_csv(sys.argv[1], schema_overrides={{"value": pl.String, "valueuom": pl.String}})
scan = scan.filter(pl.col("itemid").is_in(ids))
if columns:
    scan = scan.select(columns)
frame = scan.collect(engine="streaming")
print(f"rows {{frame.height}} in {{time.perf_counter() - t:.2f}} s")
"""

# The stage's commands without the rest of the `omnifuse` CLI. A baseline checkout from before the package
# was laid out by stage registers them in omnifuse.data.commands.
RUNNER = (
    "import argparse, sys; from omnifuse.cli import setup_logging; "
    "p = argparse.ArgumentParser(prog='omnifuse'); s = p.add_subparsers(dest='c', required=True)\n"
    "try:\n from omnifuse.cli import cohort, ehr; cohort.register(s); ehr.register(s)\n"
    "except ImportError:\n from omnifuse.data import commands; commands.register(s)\n"
    "a = p.parse_args(sys.argv[1:]); setup_logging(False); sys.exit(a.func(a))"
)


def run(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> tuple[float, float]:
    """Run ``cmd`` in ``cwd`` (not the repository: ``python -c`` would import the package from the
    current folder); return (wall seconds, peak RSS in MB of that process)."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}\n{log.read_text()[-3000:]}"
        )
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


class Bench:
    def __init__(self, work: Path, threads: int) -> None:
        self.work = work
        self.threads = threads
        self.walls: dict[str, list[float]] = {}
        self.peaks: dict[str, float] = {}

    def env(self, code: Path) -> dict[str, str]:
        return {**os.environ, "POLARS_MAX_THREADS": str(self.threads), "PYTHONPATH": str(code)}

    def record(self, name: str, wall: float, rss: float) -> None:
        self.walls.setdefault(name, []).append(wall)
        self.peaks[name] = max(self.peaks.get(name, 0.0), rss)
        print(f"{name:52s} {wall:7.1f} s {rss:8.0f} MB", flush=True)

    def best(self, name: str) -> float:
        return min(self.walls[name])

    def generate(self, root: Path, n_stays: int, args: argparse.Namespace) -> None:
        if (root / "mimic-iv").is_dir():
            return
        print(f"generating a synthetic hospital with {n_stays} ICU stays in {root} ...", flush=True)
        cmd = [sys.executable, "-m", "omnifuse", "synth", "mimic", "--out", str(root), "--n-stays",
               str(n_stays), "--seed", str(args.seed), "--filler-ratio", str(args.filler_ratio),
               "--no-with-cxr", "--workers", str(self.threads), "--no-progress", "--overwrite"]  # fmt: skip
        wall, _ = run(cmd, self.env(REPO), self.work / f"synth_{n_stays}.log", self.work)
        print(f"  generated in {wall:.0f} s", flush=True)
        self.walls[f"generate {n_stays} stays"] = [wall]

    def stage(self, label: str, root: Path, code: Path) -> float:
        """The three steps of the stage on ``root`` with the code at ``code``; returns the stage's peak."""
        out = self.work / label.replace(" ", "_")
        out.mkdir(parents=True, exist_ok=True)
        cli = [sys.executable, "-c", RUNNER]
        events = out / "events.parquet"
        steps = [
            ("ehr extract", ["ehr", "extract", "--source", str(root / "mimic-iv"), "--out", str(events)])
        ]
        for task in ("ihm", "pheno"):
            cohort = out / f"{task}.parquet"
            steps.append((f"ehr features {task}", ["ehr", "features", "--cohort", str(cohort), "--events",
                                                   str(events), "--out", str(out / f"{task}.h5"), "--threads",
                                                   str(self.threads), "--no-progress"]))  # fmt: skip
        peak = 0.0
        for name, argv in steps:
            if name == "ehr features ihm":
                self.cohorts(root, out, code)
            wall, rss = run([*cli, *argv], self.env(code), out / f"{name.replace(' ', '_')}.log", self.work)
            self.record(f"{label}: {name}", wall, rss)
            peak = max(peak, rss)
        return peak

    def cohorts(self, root: Path, out: Path, code: Path) -> None:
        """The cohort tables of both tasks (once per output folder; not part of the stage)."""
        for task in ("ihm", "pheno"):
            if (out / f"{task}.parquet").is_file():
                continue
            argv = ["cohort", "--dataset", "bench", "--kind", "mimic", "--task", task, "--modalities", "ehr",
                    "--ehr-path", str(root / "mimic-iv"), "--ehr-events", str(out / "events.parquet"),
                    "--out", str(out / f"{task}.parquet")]  # fmt: skip
            run([sys.executable, "-c", RUNNER, *argv], self.env(code), out / f"cohort_{task}.log", self.work)

    def floor(self, chartevents: Path) -> None:
        ids = sorted(it.itemid for it in items() if it.table == "chartevents")
        for name, columns in (("all columns", []), ("5 columns", ["stay_id", "charttime", "itemid", "value",
                                                                     "valuenum"])):  # fmt: skip
            code = FLOOR.format(ids=ids, columns=columns)
            wall, rss = run([sys.executable, "-c", code, str(chartevents)], self.env(REPO),
                            self.work / f"floor_{len(columns)}.log", self.work)  # fmt: skip
            self.record(f"floor {name}", wall, rss)


def chartevents_rows(root: Path) -> int:
    info = json.loads((root / "synth_info.json").read_text()) if (root / "synth_info.json").is_file() else {}
    rows = info.get("counts", {}).get("chartevents_rows")
    if rows is None:
        raise SystemExit(f"{root}: no synth_info.json with the chartevents row count")
    return int(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--roots", nargs=2, metavar=("SMALL", "LARGE"), help="existing synthetic hospitals")
    parser.add_argument(
        "--n-stays",
        nargs=2,
        type=int,
        default=[1400, 14000],
        metavar=("SMALL", "LARGE"),
        help="ICU stays of the two generated hospitals (~5 M and ~50 M chartevents rows)",
    )
    parser.add_argument(
        "--filler-ratio",
        type=float,
        default=MIMIC_IV_FILLER_RATIO,
        help="rows of items that feed no variable per variable row, when generating",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/omnifuse_ehr_bench", help="working folder (outputs, logs)")
    parser.add_argument("--threads", type=int, default=2, help="POLARS_MAX_THREADS and discretizer threads")
    parser.add_argument(
        "--repeat", type=int, default=1, help="stage runs per code version on the large hospital"
    )
    parser.add_argument("--baseline", help="checkout of older code to time against (its repository root)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()  # fmt: skip

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work, args.threads)
    if args.roots:
        small, large = (Path(r).resolve() for r in args.roots)
    else:
        small, large = (work / f"hospital_{n}" for n in args.n_stays)
        for root, n in ((small, args.n_stays[0]), (large, args.n_stays[1])):
            bench.generate(root, n, args)
    rows = {"small": chartevents_rows(small), "large": chartevents_rows(large)}
    print(f"chartevents rows: {rows['small']:,} (small), {rows['large']:,} (large); threads {args.threads}")

    # memory against rows (and the time of the current code on the small hospital)
    peak_small = bench.stage("small current", small, REPO)
    chartevents = next((large / "mimic-iv" / "icu").glob("chartevents.csv*"))
    bench.floor(chartevents)
    peaks_large: list[float] = []
    baseline_peaks: list[float] = []
    for _ in range(args.repeat):  # current and baseline code alternate, so that both see the same machine
        peaks_large.append(bench.stage("large current", large, REPO))
        if args.baseline:
            baseline_peaks.append(bench.stage("large baseline", large, Path(args.baseline).resolve()))
    bench.floor(chartevents)
    peak_large = max(peaks_large)
    slope = (peak_large - peak_small) / ((rows["large"] - rows["small"]) / 1e6)

    summary: dict[str, float] = {
        "chartevents rows small": rows["small"],
        "chartevents rows large": rows["large"],
        "stage peak MB small": peak_small,
        "stage peak MB large": peak_large,
        "slope MB per million rows": slope,
    }
    total = sum(bench.best(f"large current: {s}") for s in STAGE)
    summary["stage (best) s large"] = total
    for name in ("all columns", "5 columns"):
        summary[f"stage / floor {name}"] = total / bench.best(f"floor {name}")
    if args.baseline:
        old = sum(bench.best(f"large baseline: {s}") for s in STAGE)
        summary["baseline stage (best) s large"] = old
        summary["baseline stage peak MB large"] = max(baseline_peaks)
        summary["stage time current / baseline"] = total / old
        for s in STAGE:
            summary[f"{s} current / baseline"] = bench.best(f"large current: {s}") / bench.best(
                f"large baseline: {s}"
            )
    print()
    for key, value in summary.items():
        print(f"{key:44s} {value:12.2f}")
    print(
        f"\nmemory: {peak_small:.0f} MB at {rows['small'] / 1e6:.1f} M chartevents rows, "
        f"{peak_large:.0f} MB at {rows['large'] / 1e6:.1f} M rows: {slope:.1f} MB per million rows "
        f"(goal: <= 1.5 GB at ~50 M rows: {'met' if peak_large <= 1536 else 'NOT met'})"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"walls": bench.walls, "peak_mb": bench.peaks, "summary": summary}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
