"""``omnifuse report table2|table3|table4|fig2|fig4|fig5|fig6|fig7|fig8``: stage 3 on the command line
(the functions of :mod:`omnifuse.report`). Each reads the run directories given with ``--run``
(repeatable, or several after one flag), writes ``--out`` (a CSV table, or a figure's ``.png`` with the
``.pdf`` beside it) and ``--tidy`` (the long-form CSV behind it; default next to ``--out``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from omnifuse.cli.options import add_cache_option, add_dataclass_options, dataclass_from_args, parse_caches

log = logging.getLogger("omnifuse")

TABLE3_METHODS = ("concat", "sum", "se_gate", "gblend", "ogm_ge", "pmr", "medfuse", "omnifuse-b")
HELP = {
    "table2": "Table 2: best single modality vs concatenation per combination (modality competition)",
    "table3": "Table 3: fusion methods per combination, AUROC mean ± std, DWFuse significance marker",
    "table4": "Table 4: OmniFuse ablation rows (a)-(f) per combination",
    "fig2": "Fig. 2: best unimodal vs Concat vs DWFuse per combination (bars)",
    "fig4": "Fig. 4: OmniFuse AUROC vs missing rate, one line per removal mode",
    "fig5": "Fig. 5: with vs without imputation vs missing rate, one panel per combination",
    "fig6": "Fig. 6: with vs without imputation vs missing rate, all modalities",
    "fig7": "Fig. 7: imputation similarity and validation AUROC over epochs (one run)",
    "fig8": "Fig. 8: t-SNE of true vs imputed embeddings per modality (one run, one fold's checkpoint)",
}


def tidy_path(args: argparse.Namespace) -> Path:
    if args.tidy:
        return Path(args.tidy)
    out = Path(args.out)
    return out.with_name(f"{out.stem}.tidy.csv")


def _style(args: argparse.Namespace):
    from omnifuse.report.style import ReportStyle

    style = dataclass_from_args(ReportStyle, args)
    style.validate()
    return style


def _check_origin(args: argparse.Namespace) -> None:
    """The data origin each run recorded must be the one the caption states (``--expect-data``)."""
    from omnifuse.report.collect import check_data_origin, parse_expected_data

    check_data_origin(args.run, parse_expected_data(args.expect_data))


def _cmd_table(args: argparse.Namespace) -> int:
    from omnifuse.report import tables
    from omnifuse.report.collect import collect
    from omnifuse.report.write import write_csv

    style = _style(args)
    _check_origin(args)
    tidy = collect(args.run)
    if args.artefact == "table2":
        human = tables.table2(tidy, style.decimals)
    elif args.artefact == "table3":
        human, pvalues = tables.table3(
            tidy, args.methods, args.reference, args.alpha, style.decimals, style.marker
        )
        if args.pvalues:
            write_csv(args.pvalues, pvalues)
    else:
        human = tables.table4(tidy, args.rows, style.decimals)
    write_csv(args.out, human)
    write_csv(tidy_path(args), tidy)
    log.info("wrote %s (%d rows) and %s (%d rows)", args.out, len(human), tidy_path(args), len(tidy))
    return 0


def _save(fig: Any, data: Any, args: argparse.Namespace, dpi: int) -> int:
    from omnifuse.report.write import save_figure, write_csv

    png, pdf = save_figure(fig, args.out, dpi)
    write_csv(tidy_path(args), data)
    log.info("wrote %s, %s and %s", png, pdf, tidy_path(args))
    return 0


def _one_run(args: argparse.Namespace) -> str:
    if len(args.run) != 1:
        raise ValueError(f"{args.artefact} plots one run, got {len(args.run)} --run directories")
    return args.run[0]


def _cmd_figure(args: argparse.Namespace) -> int:
    from omnifuse.report import figures
    from omnifuse.report.collect import collect, read_histories
    from omnifuse.report.write import figure_paths

    style = _style(args)
    figure_paths(args.out)  # check the suffix before any work
    _check_origin(args)
    if args.artefact == "fig7":
        fig, data = figures.fig7(read_histories(_one_run(args)), style)
    else:
        plot = {"fig2": figures.fig2, "fig4": figures.fig4, "fig5": figures.fig5, "fig6": figures.fig6}
        fig, data = plot[args.artefact](collect(args.run), style)
    return _save(fig, data, args, style.dpi)


def _cmd_fig8(args: argparse.Namespace) -> int:
    from omnifuse.report.embeddings import fig8
    from omnifuse.report.write import figure_paths

    style = _style(args)
    figure_paths(args.out)
    _check_origin(args)
    fig, data = fig8(
        _one_run(args), args.cohort, parse_caches(args.cache), args.fold, args.max_samples,
        args.perplexity, args.seed, style,
    )  # fmt: skip
    return _save(fig, data, args, style.dpi)


def register(commands: argparse._SubParsersAction) -> None:
    from omnifuse.report.style import ReportStyle

    report = commands.add_parser("report", help="stage 3: tables and figures from training run directories")
    kinds = report.add_subparsers(dest="artefact", required=True)
    for name, help_text in HELP.items():
        p = kinds.add_parser(name, help=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument(
            "--run", action="extend", nargs="+", required=True, metavar="DIR",
            help="run directory results/{dataset}/runs/{task}/{variant}/{combo}/{setting}; repeatable",
        )  # fmt: skip
        table = name.startswith("table")
        p.add_argument(
            "--expect-data", action="append", default=[], metavar="DATASET=synthetic|real",
            help="fail unless every run recorded this data origin for the dataset (what the caption states)",
        )  # fmt: skip
        p.add_argument(
            "--out",
            required=True,
            help="table CSV" if table else "figure .png (the .pdf is written beside it)",
        )
        p.add_argument(
            "--tidy",
            default=None,
            help="long-form CSV ("
            + ("every fold of every run, AUROC and AUPRC" if table else "the plotted numbers")
            + "); default: <out stem>.tidy.csv",
        )
        if name == "table3":
            p.add_argument(
                "--methods", nargs="+", default=list(TABLE3_METHODS), help="method columns, in order"
            )
            p.add_argument(
                "--reference", default="omnifuse-b", help="method that gets the significance marker"
            )
            p.add_argument(
                "--alpha", type=float, default=0.05, help="significance level of every paired t-test"
            )
            p.add_argument(
                "--pvalues", default=None, help="CSV of every reference-vs-method p-value (optional)"
            )
        if name == "table4":
            p.add_argument("--rows", nargs="+", default=list("abcdef"), choices=tuple("abcdef"), help="rows")
        if name == "fig8":
            p.add_argument("--cohort", required=True, help="cohort table the run was trained on")
            add_cache_option(p, "feature cache of an input modality, repeatable")
            p.add_argument(
                "--fold", type=int, default=0, help="fold whose checkpoint and test samples are used"
            )
            p.add_argument("--max-samples", type=int, default=500, help="cap on test samples (0: all)")
            p.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (capped by N)")
            p.add_argument("--seed", type=int, default=0, help="t-SNE random_state")
        add_dataclass_options(p, ReportStyle)
        p.set_defaults(func=_cmd_table if table else _cmd_fig8 if name == "fig8" else _cmd_figure)
