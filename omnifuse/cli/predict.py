"""``omnifuse predict``: predictions of a trained checkpoint (the same as
:func:`omnifuse.train.predict.predict`)."""

from __future__ import annotations

import argparse
import logging

from omnifuse.cli.options import add_cache_option, parse_caches

log = logging.getLogger("omnifuse")


def _cmd_predict(args: argparse.Namespace) -> int:
    from omnifuse.train.predict import predict

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
    q = commands.add_parser(
        "predict",
        help="predict with a trained checkpoint (probabilities, per-modality heads, imputed modalities)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    q.add_argument("--checkpoint", required=True, help="fold{k}/checkpoint.pt of a training run")
    add_cache_option(q)
    q.add_argument("--cohort", default=None, help="cohort table (samples, availability, labels); optional")
    q.add_argument("--out", required=True, help="output parquet")
    q.add_argument("--batch-size", type=int, default=512)
    q.add_argument("--device", default="cpu")
    q.set_defaults(func=_cmd_predict)
