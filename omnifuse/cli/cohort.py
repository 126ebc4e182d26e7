"""``omnifuse cohort``: stage 0, the cohort table of a dataset and task."""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from omnifuse.cli.options import add_dataclass_options, dataclass_from_args

log = logging.getLogger("omnifuse")


def cohort_options(args: argparse.Namespace) -> Any:
    """The :class:`omnifuse.cohorts.build.CohortOptions` of the parsed flags."""
    from omnifuse.cohorts.build import CohortOptions

    return dataclass_from_args(CohortOptions, args)


def _cmd_cohort(args: argparse.Namespace) -> int:
    from omnifuse.cohorts.build import DatasetSources, build_cohort
    from omnifuse.formats.cohort import write_cohort

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
    frame, meta = build_cohort(src, args.task, cohort_options(args), args.ehr_events or None)
    write_cohort(args.out, frame, meta)
    log.info("wrote %s (%d samples) in %.1f s", args.out, frame.height, time.perf_counter() - t0)
    return 0


def add_cohort_options(p: argparse.ArgumentParser) -> None:
    from omnifuse.cohorts.build import CohortOptions

    add_dataclass_options(p, CohortOptions, skip=("cxr_views",))
    p.add_argument(
        "--cxr-views", dest="cxr_views", nargs="+", default=["AP"], help="X-ray views that qualify"
    )


def register(commands: argparse._SubParsersAction) -> None:
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
    add_cohort_options(p)
    p.set_defaults(func=_cmd_cohort)
