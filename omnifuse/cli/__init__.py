"""The ``omnifuse`` command.

Sub-commands map one-to-one onto package functions so that everything the workflow does can also be
run (and debugged) by hand; ``omnifuse --help`` lists them, e.g.::

    omnifuse synth mimic --out resources/synthetic/mimic --n-stays 2000 --seed 0
    omnifuse synth lung  --out resources/synthetic/lung --n-patients 1000 --seed 0

Errors end the command with one line naming the file and what is wrong (exit status 2: bad input or
settings; 1: an unexpected error); ``omnifuse --debug ...`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
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
# ``register(subparsers)``. Only the module of the command being run is imported (the others pull in
# the generators, polars, imaging libraries: seconds of start-up a training job does not need), and
# handlers import their stage's code lazily, so a job's code hash (omnifuse.workflow.code) follows
# only the handler its rule runs.
COMMANDS = {
    "synth": "omnifuse.cli.synth",
    "cohort": "omnifuse.cli.cohort",
    "ehr": "omnifuse.cli.ehr",
    "extract": "omnifuse.cli.extract",
    "train": "omnifuse.cli.train",
    "predict": "omnifuse.cli.predict",
    "report": "omnifuse.cli.report",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``command`` alone, or of every command (``None``: ``omnifuse --help``)."""
    parser = argparse.ArgumentParser(prog="omnifuse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"omnifuse {omnifuse.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the full traceback (and debug logging)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(module).register(commands)
    return parser


def input_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or settings (exit status 2): ours subclass ValueError (the
    format, source, cache, checkpoint and extraction errors name the file); OSError covers unreadable
    or truncated files; polars and h5py errors escape only from files we do not wrap."""
    errors: list[type[BaseException]] = [ValueError, OSError, EOFError]
    if "polars" in sys.modules:
        errors.append(sys.modules["polars"].exceptions.PolarsError)
    return tuple(errors)


def error_line(exc: BaseException) -> str:
    """One line for the log: the message (first line; exception type when the message alone says
    little), newlines folded."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    if not text or not isinstance(exc, ValueError | FileExistsError | FileNotFoundError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text


def command_of(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (its first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = command_of(argv)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    setup_logging(args.verbose or args.debug)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, input_errors()):
            log.error("%s", error_line(exc))
            return 2
        log.error("unexpected error: %s (rerun with omnifuse --debug for the traceback)", error_line(exc))
        return 1


# Commands whose process ends without the interpreter's teardown (module and library finalisation),
# which takes ~0.4 s once torch is imported: 8-13 % of the demo's short training jobs (120 per demo).
# They have closed every file they wrote when they return; the log handlers and streams are flushed.
FAST_EXIT = frozenset({"train"})


def run() -> None:
    """The ``omnifuse`` command (and ``python -m omnifuse``): :func:`main`, then the process exits."""
    argv = sys.argv[1:]
    code = main(argv)
    if command_of(argv) in FAST_EXIT:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
