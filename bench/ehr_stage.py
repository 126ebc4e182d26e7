"""Benchmark of the EHR stage on a synthetic hospital, against the I/O floor.

Measures wall time and peak memory (max RSS of each child process) of

* the floor: polars scanning ``icu/chartevents.csv.gz`` and keeping the rows of the 17 variables'
  item ids (``scan_csv().filter(itemid.is_in(ids)).collect(engine="streaming")``), once with every
  column and once with the five columns the stage reads; run before and after the stage;
* the EHR stage: ``omnifuse ehr extract`` (one scan of chartevents + labevents -> clean events),
  ``omnifuse ehr features`` for ``ihm`` and ``pheno`` (discretized caches);
* for information, ``omnifuse cohort`` for both tasks (stage-0 rules, not part of the EHR stage).

Goal: EHR stage within 3x of the floor, peak memory under 4 GB. Times are only comparable
within one run (the machine is shared): floors and stage runs alternate (``--repeat``), the best time of
each step is used, and the script prints ratios.

    python bench/ehr_stage.py --n-stays 50000 --work /tmp/ehr_bench      # generates the hospital once
    python bench/ehr_stage.py --root /data/synthetic50k --work /tmp/ehr_bench --json result.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

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


# The stage's commands without the rest of the `omnifuse` CLI: building the full parser imports every
# stage's command module, some of which import torch (seconds per call, unrelated to the EHR stage).
# The script also times `omnifuse --help` so that this overhead is visible.
RUNNER = (
    "import argparse, sys; from omnifuse.cli import setup_logging, cohort, ehr; "
    "p = argparse.ArgumentParser(prog='omnifuse'); s = p.add_subparsers(dest='c', required=True); "
    "cohort.register(s); ehr.register(s); "
    "a = p.parse_args(sys.argv[1:]); setup_logging(False); sys.exit(a.func(a))"
)


def run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in MB of that process)."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}\n{log.read_text()[-3000:]}"
        )
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="existing synthetic hospital (folder with mimic-iv/)")
    parser.add_argument("--n-stays", type=int, default=50000, help="ICU stays when generating")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/omnifuse_ehr_bench", help="working folder (outputs, logs)")
    parser.add_argument("--threads", type=int, default=2, help="POLARS_MAX_THREADS and discretizer threads")
    parser.add_argument("--repeat", type=int, default=1, help="stage runs (floors run before and after each)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "POLARS_MAX_THREADS": str(args.threads)}
    omnifuse = [sys.executable, "-m", "omnifuse"]
    stage_cli = [sys.executable, "-c", RUNNER]

    root = Path(args.root) if args.root else work / "hospital"
    if not (root / "mimic-iv").is_dir():
        print(f"generating a synthetic hospital with {args.n_stays} ICU stays in {root} ...", flush=True)
        wall, _ = run(
            [*omnifuse, "synth", "mimic", "--out", str(root), "--n-stays", str(args.n_stays), "--seed",
             str(args.seed), "--no-with-cxr", "--workers", str(args.threads), "--no-progress", "--overwrite"],
            env, work / "synth.log",
        )  # fmt: skip
        print(f"  generated in {wall:.0f} s", flush=True)
    chartevents = next((root / "mimic-iv" / "icu").glob("chartevents.csv*"))
    info = json.loads((root / "synth_info.json").read_text()) if (root / "synth_info.json").is_file() else {}
    counts = info.get("counts", {})

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from omnifuse.cohorts.ehr.channels import items

    ids = sorted(it.itemid for it in items() if it.table == "chartevents")

    samples: dict[str, list[float]] = {}
    peaks: dict[str, float] = {}

    def record(name: str, wall: float, rss: float) -> None:
        samples.setdefault(name, []).append(wall)
        peaks[name] = max(peaks.get(name, 0.0), rss)
        print(f"{name:40s} {wall:7.1f} s {rss:8.0f} MB", flush=True)

    def floor() -> None:
        for name, columns in (
            ("all columns", []),
            ("5 columns", ["stay_id", "charttime", "itemid", "value", "valuenum"]),
        ):
            code = FLOOR.format(ids=ids, columns=columns)
            wall, rss = run(
                [sys.executable, "-c", code, str(chartevents)], env, work / f"floor_{len(columns)}.log"
            )
            record(f"floor {name}", wall, rss)

    size = chartevents.stat().st_size / 1e6
    rows = counts.get("chartevents_rows", "?")
    print(f"chartevents: {chartevents} ({size:.0f} MB, {rows} rows)", flush=True)
    print(f"threads {args.threads}, repeats {args.repeat}", flush=True)
    wall, _ = run([*omnifuse, "--help"], env, work / "cli_help.log")
    print(f"{'omnifuse --help (CLI start-up, not counted)':40s} {wall:7.1f} s", flush=True)
    events = work / "events.parquet"
    extract = [*stage_cli, "ehr", "extract", "--source", str(root / "mimic-iv"), "--out", str(events)]
    steps = [("ehr extract", extract)]
    for task in ("ihm", "pheno"):
        cohort = work / f"{task}.parquet"
        steps.append(
            (f"cohort {task}", [*stage_cli, "cohort", "--dataset", "bench", "--kind", "mimic", "--task", task,
                                "--modalities", "ehr", "cxr", "--ehr-path", str(root / "mimic-iv"),
                                "--ehr-events", str(events), "--out", str(cohort)])
        )  # fmt: skip
        steps.append(
            (f"ehr features {task}", [*stage_cli, "ehr", "features", "--cohort", str(cohort), "--events",
                                      str(events), "--out", str(work / f"{task}_ehr.h5"), "--threads",
                                      str(args.threads), "--no-progress"])
        )  # fmt: skip
    floor()
    for _ in range(args.repeat):  # floors and stage alternate, so that both see the same machine
        for name, cmd in steps:
            record(name, *run(cmd, env, work / f"{name.replace(' ', '_')}.log"))
        floor()

    # best of the repeats: the least disturbed run of each step (the machine is shared)
    best = {name: min(walls) for name, walls in samples.items()}
    stage = ["ehr extract", "ehr features ihm", "ehr features pheno"]
    total = sum(best[s] for s in stage)
    peak = max(peaks[s] for s in stage)
    summary: dict[str, float] = {"ehr stage (best) s": total, "ehr stage peak MB": peak}
    for name in ("all columns", "5 columns"):
        summary[f"floor {name} (best) s"] = best[f"floor {name}"]
        summary[f"stage / floor {name}"] = total / best[f"floor {name}"]
        summary[f"extract / floor {name}"] = best["ehr extract"] / best[f"floor {name}"]
    print()
    for key, value in summary.items():
        print(f"{key:40s} {value:9.2f}")
    ratio = summary["stage / floor all columns"]
    print(
        f"\ngoal: stage within 3x of the floor ({ratio:.2f}x of scan+filter+collect of chartevents; "
        f"{summary['stage / floor 5 columns']:.2f}x of the 5-column variant) and peak memory < 4 GB "
        f"({peak / 1024:.2f} GB): {'met' if ratio <= 3 and peak < 4096 else 'NOT met'}"
    )
    results = {"walls": samples, "peak_mb": peaks}
    if args.json:
        Path(args.json).write_text(
            json.dumps({"steps": results, "summary": summary, "counts": counts}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
