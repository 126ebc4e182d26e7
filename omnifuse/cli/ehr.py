"""``omnifuse ehr extract|features|export-episodes``: the 76-column EHR time series of stage 0."""

from __future__ import annotations

import argparse
import json
import logging
import time

from omnifuse.cli.cohort import add_cohort_options, cohort_options
from omnifuse.cli.options import add_dataclass_options, add_progress_option, dataclass_from_args

log = logging.getLogger("omnifuse")


def _cmd_extract(args: argparse.Namespace) -> int:
    from omnifuse.cohorts.ehr.events import extract_events_to, log_summary, summary_path
    from omnifuse.cohorts.ehr.options import EventOptions
    from omnifuse.cohorts.mimic import open_source
    from omnifuse.cohorts.mimic.sources import reading

    t0 = time.perf_counter()
    source = open_source(args.source, args.format)
    with reading(source):  # a damaged table is named (polars says only "unexpected end of file")
        summary = extract_events_to(args.out, source, dataclass_from_args(EventOptions, args))
    log_summary(summary)
    log.info(
        "wrote %s (%d events) and %s in %.1f s",
        args.out,
        summary["rows_kept"],
        summary_path(args.out),
        time.perf_counter() - t0,
    )
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from omnifuse.cohorts.ehr.build import build_ehr_cache
    from omnifuse.cohorts.ehr.options import DiscretizerOptions

    t0 = time.perf_counter()
    info = build_ehr_cache(
        args.cohort,
        args.events,
        args.out,
        dataclass_from_args(DiscretizerOptions, args),
        shard_size=args.shard_size,
        progress=args.progress,
        threads=args.threads,
    )
    log.info("done in %.1f s: %s", time.perf_counter() - t0, json.dumps(info))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from omnifuse.cohorts.ehr.export import export_episodes
    from omnifuse.cohorts.ehr.options import EventOptions

    t0 = time.perf_counter()
    info = export_episodes(
        args.source,
        args.task,
        args.out,
        cohort_options(args),
        dataclass_from_args(EventOptions, args),
        fmt=args.format,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    log.info("done in %.1f s: %s", time.perf_counter() - t0, json.dumps(info))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from omnifuse.cohorts.ehr.options import DiscretizerOptions, EventOptions

    fmt = argparse.ArgumentDefaultsHelpFormatter
    ehr = commands.add_parser("ehr", help="the 76-column EHR time series (MedFuse / mimic3-benchmarks)")
    sub = ehr.add_subparsers(dest="ehr_command", required=True)
    p = sub.add_parser(
        "extract",
        help="scan MIMIC-IV / MEDS once: clean events of the 17 variables per ICU stay",
        formatter_class=fmt,
    )
    p.add_argument("--source", required=True, help="MIMIC-IV root (hosp/ or core/, icu/) or MEDS data")
    p.add_argument("--format", default="auto", choices=("auto", "mimic-iv", "meds"), help="source format")
    p.add_argument("--out", required=True, help="events parquet to write (its summary: same name, .json)")
    add_dataclass_options(p, EventOptions)
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser(
        "features", help="discretize a cohort's stays into the ehr.h5 cache", formatter_class=fmt
    )
    p.add_argument("--cohort", required=True, help="cohort parquet (omnifuse cohort)")
    p.add_argument("--events", required=True, help="events parquet (omnifuse ehr extract)")
    p.add_argument("--out", required=True, help="ehr.h5 cache to write")
    p.add_argument("--shard-size", type=int, default=2048, help="stays per resumable shard")
    p.add_argument("--threads", type=int, default=2, help="shards discretized at a time")
    add_dataclass_options(p, DiscretizerOptions)
    add_progress_option(p)
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser(
        "export-episodes",
        help="per-stay {stay}_timeseries.csv files in the mimic3-benchmarks episode format",
        formatter_class=fmt,
    )
    p.add_argument("--source", required=True, help="MIMIC-IV root or MEDS data")
    p.add_argument("--task", required=True, choices=("ihm", "pheno"), help="task (cohort rules and window)")
    p.add_argument("--out", required=True, help="output folder (created atomically)")
    p.add_argument("--format", default="auto", choices=("auto", "mimic-iv", "meds"), help="source format")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    add_cohort_options(p)
    add_dataclass_options(p, EventOptions)
    add_progress_option(p)
    p.set_defaults(func=_cmd_export)
