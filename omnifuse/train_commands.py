"""``omnifuse train`` and ``omnifuse predict``: stage 2 on the command line (same as
:func:`omnifuse.train.train` and :func:`omnifuse.predict.predict`)."""

from __future__ import annotations

import argparse
import json
import logging

from omnifuse.method_names import ABLATIONS, METHOD_NAMES

log = logging.getLogger("omnifuse")


def parse_caches(items: list[str]) -> dict[str, str]:
    """``["ehr=path", "cxr=path"]`` → ``{"ehr": "path", "cxr": "path"}`` (each modality once)."""
    caches: dict[str, str] = {}
    for item in items or []:
        modality, sep, path = item.partition("=")
        if not sep or not modality or not path:
            raise ValueError(f"--cache expects modality=path, got {item!r}")
        if modality in caches:
            raise ValueError(f"--cache given twice for {modality}")
        caches[modality] = path
    return caches


def _cmd_train(args: argparse.Namespace) -> int:
    from omnifuse.train import train

    overrides = list(args.overrides or [])
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


def _cmd_predict(args: argparse.Namespace) -> int:
    from omnifuse.predict import predict

    table = predict(
        args.checkpoint,
        parse_caches(args.cache),
        cohort=args.cohort,
        out=args.out,
        batch_size=args.batch_size,
        device=args.device,
    )
    log.info("predicted %d samples", len(table))
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
    p.add_argument(
        "--cache", action="append", default=[], metavar="MODALITY=PATH", help="feature cache, repeatable"
    )
    p.add_argument(
        "--method",
        default="omnifuse",
        choices=METHOD_NAMES,
        help="fusion method",
    )
    p.add_argument(
        "--combo", default=None, help="input modalities joined by '+' (default: every cached modality)"
    )
    p.add_argument("--folds", type=int, nargs="+", default=None, help="test folds to run (default: all)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--config", default=None, help="YAML file with 'train:' and 'method:' sections")
    p.add_argument("--workers", type=int, default=1, help="folds trained in parallel processes")
    p.add_argument("--ablation", choices=sorted(ABLATIONS), default=None, help="OmniFuse Table 4 row (a)-(f)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=_cmd_train)

    q = commands.add_parser(
        "predict",
        help="predict with a trained checkpoint (probabilities, per-modality heads, imputed modalities)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    q.add_argument("--checkpoint", required=True, help="fold{k}/checkpoint.pt of a training run")
    q.add_argument(
        "--cache", action="append", default=[], metavar="MODALITY=PATH", help="feature cache, repeatable"
    )
    q.add_argument("--cohort", default=None, help="cohort table (samples, availability, labels); optional")
    q.add_argument("--out", required=True, help="output parquet")
    q.add_argument("--batch-size", type=int, default=512)
    q.add_argument("--device", default="cpu")
    q.set_defaults(func=_cmd_predict)
