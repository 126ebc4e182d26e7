"""``omnifuse cohort`` (stage 0) and ``omnifuse ehr extract|features|export-episodes`` (EHR features)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from omnifuse.cli import add_dataclass_options, dataclass_from_args

log = logging.getLogger("omnifuse")


def _progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(), help="progress bars"
    )


def _cohort_options(args: argparse.Namespace):  # -> CohortOptions
    from omnifuse.data.cohorts import CohortOptions

    options = dataclass_from_args(CohortOptions, args)
    return options


def _cmd_cohort(args: argparse.Namespace) -> int:
    from omnifuse.cohort import write_cohort
    from omnifuse.data.cohorts import DatasetSources, build_cohort

    src = DatasetSources(
        name=args.dataset,
        kind=args.kind,
        modalities=tuple(args.modalities),
        ehr_format=args.ehr_format,
        ehr_path=args.ehr_path,
        cxr_path=args.cxr_path,
        reports_path=args.reports_path,
        manifest=args.manifest,
        label_column=args.label_column,
        classes=tuple(args.classes),
    )
    t0 = time.perf_counter()
    frame, meta = build_cohort(src, args.task, _cohort_options(args), args.ehr_events or None)
    write_cohort(args.out, frame, meta)
    log.info("wrote %s (%d samples) in %.1f s", args.out, frame.height, time.perf_counter() - t0)
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from omnifuse.data.mimic import open_source
    from omnifuse.features.ehr.events import extract_events_to, log_summary, summary_path
    from omnifuse.features.ehr.options import EventOptions

    t0 = time.perf_counter()
    source = open_source(args.source, args.format)
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
    from omnifuse.features.ehr.build import build_ehr_cache
    from omnifuse.features.ehr.options import DiscretizerOptions

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
    from omnifuse.features.ehr.export import export_episodes
    from omnifuse.features.ehr.options import EventOptions

    t0 = time.perf_counter()
    info = export_episodes(
        args.source,
        args.task,
        args.out,
        _cohort_options(args),
        dataclass_from_args(EventOptions, args),
        fmt=args.format,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    log.info("done in %.1f s: %s", time.perf_counter() - t0, json.dumps(info))
    return 0


def _add_cohort_options(p: argparse.ArgumentParser) -> None:
    from omnifuse.data.cohorts import CohortOptions

    add_dataclass_options(p, CohortOptions, skip=("cxr_views",))
    p.add_argument(
        "--cxr-views", dest="cxr_views", nargs="+", default=["AP"], help="X-ray views that qualify"
    )


def register(commands: argparse._SubParsersAction) -> None:
    from omnifuse.features.ehr.options import DiscretizerOptions, EventOptions

    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = commands.add_parser(
        "cohort",
        help="build a cohort table (ids, labels, patient-level folds, availability)",
        formatter_class=fmt,
    )
    p.add_argument("--dataset", required=True, help="dataset name (datasets.<name>)")
    p.add_argument("--kind", required=True, choices=("mimic", "manifest"), help="dataset kind")
    p.add_argument("--task", required=True, choices=("ihm", "pheno", "subtype"), help="task")
    p.add_argument("--modalities", nargs="+", required=True, help="modalities of the dataset")
    p.add_argument("--out", required=True, help="cohort parquet to write")
    p.add_argument(
        "--ehr-format", default="mimic-iv", choices=("mimic-iv", "meds", "auto"), help="EHR source format"
    )
    p.add_argument("--ehr-path", default="", help="MIMIC-IV root or MEDS data")
    p.add_argument("--ehr-events", default="", help="events of `omnifuse ehr extract` (else extracted here)")
    p.add_argument("--cxr-path", default="", help="MIMIC-CXR-JPG root")
    p.add_argument("--reports-path", default="", help="MIMIC-CXR reports root")
    p.add_argument("--manifest", default="", help="manifest CSV (kind manifest)")
    p.add_argument("--label-column", default="label", help="manifest label column")
    p.add_argument("--classes", nargs="+", default=["L1", "L2", "L3"], help="class names in index order")
    _add_cohort_options(p)
    p.set_defaults(func=_cmd_cohort)

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
    _progress(p)
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
    _add_cohort_options(p)
    add_dataclass_options(p, EventOptions)
    _progress(p)
    p.set_defaults(func=_cmd_export)
