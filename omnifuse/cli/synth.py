"""``omnifuse synth mimic|lung``: write the synthetic demo cohorts."""

from __future__ import annotations

import argparse
import json
import logging
import time

from omnifuse.cli.options import (
    add_dataclass_options,
    add_progress_option,
    dataclass_from_args,
    default_workers,
)

log = logging.getLogger("omnifuse")


def _cmd_synth_mimic(args: argparse.Namespace) -> int:
    from omnifuse.synth.mimic import MimicSynthConfig, generate_mimic

    cfg = dataclass_from_args(MimicSynthConfig, args)
    log.info(
        "writing a synthetic MIMIC hospital (%d ICU stays, seed %d) to %s", cfg.n_stays, cfg.seed, args.out
    )
    t0 = time.perf_counter()
    summary = generate_mimic(
        args.out, cfg, overwrite=args.overwrite, workers=args.workers, progress=args.progress
    )
    log.info("done in %.1f s: %s", time.perf_counter() - t0, json.dumps(summary["counts"]))
    return 0


def _cmd_synth_lung(args: argparse.Namespace) -> int:
    from omnifuse.synth.lung import LungSynthConfig, generate_lung

    cfg = dataclass_from_args(LungSynthConfig, args)
    log.info(
        "writing a synthetic lung cohort (%d patients, seed %d) to %s", cfg.n_patients, cfg.seed, args.out
    )
    t0 = time.perf_counter()
    summary = generate_lung(args.out, cfg, overwrite=args.overwrite, workers=args.workers)
    log.info("done in %.1f s: %d patients", time.perf_counter() - t0, cfg.n_patients)
    log.debug("summary: %s", json.dumps(summary))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from omnifuse.synth.lung import LungSynthConfig
    from omnifuse.synth.mimic import MimicSynthConfig

    synth = commands.add_parser("synth", help="generate a synthetic cohort in real raw-data layouts")
    kinds = synth.add_subparsers(dest="kind", required=True)
    for name, cls, func, help_text in (
        ("mimic", MimicSynthConfig, _cmd_synth_mimic, "ICU hospital: MIMIC-IV + MIMIC-CXR-JPG + reports"),
        ("lung", LungSynthConfig, _cmd_synth_lung, "lung cancer subtyping: CT + PET + Chinese reports"),
    ):
        p = kinds.add_parser(name, help=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--out", required=True, help="output directory (created atomically)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
        p.add_argument("--workers", type=int, default=default_workers(), help="processes for rendering")
        if name == "mimic":
            add_progress_option(p)
        add_dataclass_options(p, cls)
        p.set_defaults(func=func)
