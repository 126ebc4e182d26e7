"""``omnifuse train``: stage 2 on the command line (the same as :func:`omnifuse.train.train`)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from omnifuse.cli.options import add_cache_option, parse_caches
from omnifuse.methods import ABLATIONS, METHOD_NAMES

log = logging.getLogger("omnifuse")


class FoldsAction(argparse.Action):
    """``--folds 0 1``, ``--folds 0,1`` or ``--folds 0 --folds 1``; a ``KEY=VALUE`` that follows the fold
    numbers is a config override (``nargs='+'`` would otherwise swallow it), kept in ``spilled``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        folds = list(getattr(namespace, self.dest) or [])
        spilled = list(getattr(namespace, "spilled", None) or [])
        for value in values:
            if "=" in value:
                spilled.append(value)
                continue
            for part in filter(None, value.split(",")):
                try:
                    folds.append(int(part))
                except ValueError:
                    parser.error(f"argument {option_string}: fold numbers expected, got {value!r}")
        if not folds:
            parser.error(f"argument {option_string}: at least one fold number expected")
        setattr(namespace, self.dest, folds)
        namespace.spilled = spilled


def _cmd_train(args: argparse.Namespace) -> int:
    from omnifuse.train import train

    overrides = list(args.overrides or []) + list(getattr(args, "spilled", None) or [])
    if args.ablation:
        if args.method != "omnifuse":
            raise ValueError("--ablation applies to --method omnifuse")
        overrides = [f"method.{k}={str(v).lower()}" for k, v in ABLATIONS[args.ablation].items()] + overrides
    summary = train(
        args.cohort,
        parse_caches(args.cache),
        method=args.method,
        combo=args.combo,
        out_dir=args.out,
        folds=args.folds,
        overrides=overrides,
        config_file=args.config,
        workers=args.workers,
    )
    line = {
        "method": args.method,
        "combo": summary.get("combo"),
        "folds": summary["folds"],
        "auroc": summary["auroc"],
        "auprc": summary["auprc"],
        "wall_s": round(summary["run_wall_s"], 2),
    }
    print(json.dumps(line))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="cross-validate a fusion method on cached embeddings",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Train and evaluate a method on the cohort's folds; writes OUT/fold{k}/{predictions.parquet, "
            "metrics.json, history.parquet, checkpoint.pt} and OUT/summary.json. Config overrides are "
            "key=value (train.<key> or method.<key>; bare keys are looked up in both), e.g. "
            "train.max_epochs=30 method.tla=false."
        ),
    )
    p.add_argument("--cohort", required=True, help="cohort table (results/{dataset}/cohorts/{task}.parquet)")
    add_cache_option(p)
    p.add_argument(
        "--method",
        default="omnifuse",
        choices=METHOD_NAMES,
        help="fusion method",
    )
    p.add_argument(
        "--combo", default=None, help="input modalities joined by '+' (default: every cached modality)"
    )
    p.add_argument(
        "--folds",
        nargs="+",
        action=FoldsAction,
        default=None,
        metavar="K",
        help="test folds to run, e.g. --folds 0 1 or --folds 0,1 (default: all)",
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--config", default=None, help="YAML file with 'train:' and 'method:' sections")
    p.add_argument("--workers", type=int, default=1, help="folds trained in parallel processes")
    p.add_argument("--ablation", choices=sorted(ABLATIONS), default=None, help="OmniFuse Table 4 row (a)-(f)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=_cmd_train)
