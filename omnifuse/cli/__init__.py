"""The ``omnifuse`` command.

Sub-commands map one-to-one onto package functions so that everything the workflow does can also be
run (and debugged) by hand; ``omnifuse --help`` lists them, e.g.::

    omnifuse synth mimic --out resources/synthetic/mimic --n-stays 2000 --seed 0
    omnifuse synth lung  --out resources/synthetic/lung --n-patients 300 --seed 0
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

import omnifuse

log = logging.getLogger("omnifuse")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# One module per top-level command (``omnifuse <command> ...``), each adding its sub-commands with
# ``register(subparsers)``. Handlers import their stage's code lazily: ``omnifuse --help`` stays fast,
# and a job's code hash (omnifuse.workflow.code) follows only the handler its rule runs.
COMMAND_MODULES = (
    "omnifuse.cli.synth",
    "omnifuse.cli.cohort",
    "omnifuse.cli.ehr",
    "omnifuse.cli.extract",
    "omnifuse.cli.train",
    "omnifuse.cli.predict",
    "omnifuse.cli.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnifuse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"omnifuse {omnifuse.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
