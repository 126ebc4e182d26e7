"""``omnifuse extract cxr|rep|ct|pet``: one feature cache (and its extraction report) from a cohort."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from omnifuse.cli.options import add_dataclass_options, dataclass_from_args

log = logging.getLogger("omnifuse")

TEXT_OPTIONS = (
    "text_model", "tokenizer", "max_tokens", "max_words", "window_overlap", "section", "fallback", "language",
)  # fmt: skip
IMAGE_OPTIONS = ("weights", "image_size")
VOLUME_OPTIONS = (
    "window", "slice_mode", "slice_n", "max_slices", "allow_missing_slices", "crop", "crop_half_width_mm",
    "crop_fallback",
)  # fmt: skip
CXR_OPTIONS = ("decode",)
HELP = {
    "cxr": "chest X-rays (cxr_path under --root) → ResNet34 vectors (N, 1, 512)",
    "rep": "reports (rep_path under --root) → token states (N, max_tokens, hidden)",
    "ct": "CT volumes (ct_path: NIfTI or DICOM folder) → slice vectors (N, slices, 512)",
    "pet": "PET volumes (pet_path: NIfTI or DICOM folder) → slice vectors (N, slices, 512)",
}
# defaults that differ between the volume modalities: lung window for CT, SUV 0-10 for PET
DEFAULTS = {"ct": {"window": (-1350.0, 150.0)}, "pet": {"window": (0.0, 10.0)}}


def _cmd_extract(args: argparse.Namespace) -> int:
    from omnifuse.features.engine import ExtractionError
    from omnifuse.features.extract import extract
    from omnifuse.features.options import ExtractOptions

    opts = dataclass_from_args(ExtractOptions, args)
    try:
        summary = extract(args.modality, args.cohort, args.root, args.out, opts, report=args.report)
    except ExtractionError as exc:
        log.error("%s", exc)
        return 3
    log.debug("summary: %s", json.dumps(summary, default=str))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from omnifuse.features.options import ExtractOptions

    extract = commands.add_parser(
        "extract", help="stage 1: encode one modality of a cohort into a feature cache"
    )
    kinds = extract.add_subparsers(dest="modality", required=True)
    for modality, help_text in HELP.items():
        p = kinds.add_parser(modality, help=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument(
            "--cohort", required=True, help="cohort table (results/{dataset}/cohorts/{task}.parquet)"
        )
        p.add_argument(
            "--root", required=True, help="folder the cohort's <modality>_path column is relative to"
        )
        p.add_argument(
            "--out", required=True, help="cache to write (results/{dataset}/features/{task}/<m>.h5)"
        )
        p.add_argument("--report", default=None, help="extraction report CSV (default: <out>.report.csv)")
        skip = {
            "cxr": TEXT_OPTIONS + VOLUME_OPTIONS,
            "rep": IMAGE_OPTIONS + VOLUME_OPTIONS + CXR_OPTIONS,
            "ct": TEXT_OPTIONS + CXR_OPTIONS,
            "pet": TEXT_OPTIONS + CXR_OPTIONS,
        }[modality]
        add_dataclass_options(p, ExtractOptions, skip=skip)
        p.set_defaults(func=_cmd_extract, **DEFAULTS.get(modality, {}))
        if sys.stderr.isatty():
            p.set_defaults(progress=True)
