"""Stage-3 figures 2, 4-7: plotted numbers, PNG + PDF + tidy CSV, determinism, style independence."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from omnifuse.cli import main
from omnifuse.formats.run import Run, setting_name
from omnifuse.report.collect import ReportError, collect, read_histories
from omnifuse.report.figures import fig2_data, fig4_data, fig7_data, imputation_data
from tests.helpers import make_run

BASE = np.array([0.70, 0.72, 0.69, 0.71, 0.73])
RATES = (0.0, 0.3, 0.6, 0.9)
MODS = ("ehr", "cxr", "rep")


def _fig2_runs(root):
    dirs = [make_run(root, Run("mimic", "pheno", "unimodal", m), list(BASE + d))
            for m, d in zip(MODS, (0.05, -0.05, 0.0), strict=True)]  # fmt: skip
    for combo in ("ehr+cxr", "ehr+rep", "cxr+rep", "ehr+cxr+rep"):
        dirs.append(make_run(root, Run("mimic", "pheno", "concat", combo), list(BASE + 0.01)))
        dirs.append(make_run(root, Run("mimic", "pheno", "omnifuse-b", combo), list(BASE + 0.07)))
    return dirs


def _curve_runs(root):
    dirs = []
    full = "+".join(MODS)
    for mode in (*MODS, "random"):
        for r in RATES:
            dirs.append(make_run(root, Run("mimic", "pheno", "omnifuse", full, setting_name(mode, r)),
                                 list(BASE + 0.1 - 0.1 * r)))  # fmt: skip
    for combo in ("ehr+cxr", full):
        for v, slope in (("omnifuse", 0.05), ("omnifuse-noimp", 0.2)):
            for r in RATES:
                run = Run("mimic", "pheno", v, combo, setting_name("random", r))
                if not (root / run.dir).exists():
                    dirs.append(make_run(root, run, list(BASE + 0.1 - slope * r)))
    return list(dict.fromkeys(dirs))


def test_fig2_bars_best_unimodal_concat_dwfuse(tmp_path):
    data = fig2_data(collect(_fig2_runs(tmp_path)))
    assert data["combination"].unique(maintain_order=True).to_list() == [
        "ehr+cxr", "ehr+rep", "cxr+rep", "ehr+cxr+rep"
    ]  # fmt: skip
    cr = data.filter(pl.col("combination") == "cxr+rep")
    assert cr["series"].to_list() == ["Best unimodal", "Concat", "DWFuse"]
    assert cr["modality"][0] == "rep"
    assert cr["mean"].to_list() == pytest.approx([BASE.mean(), BASE.mean() + 0.01, BASE.mean() + 0.07])


def test_fig4_lines_per_mode_share_the_complete_point(tmp_path):
    data = fig4_data(collect(_curve_runs(tmp_path)))
    assert data["series"].unique(maintain_order=True).to_list() == [
        "ehr removed", "cxr removed", "rep removed", "random"
    ]  # fmt: skip
    for series in data.partition_by("series"):
        assert series.sort("x")["x"].to_list() == [0.0, 30.0, 60.0, 90.0]
        assert series.sort("x")["mean"].to_list() == pytest.approx(
            [BASE.mean() + 0.1 - 0.1 * r for r in RATES]
        )


def test_fig5_fig6_with_and_without_imputation(tmp_path):
    tidy = collect(_curve_runs(tmp_path))
    five = imputation_data(tidy)
    assert five["panel"].unique(maintain_order=True).to_list() == ["ehr+cxr", "ehr+cxr+rep"]
    six = imputation_data(tidy, full_only=True)
    assert six["panel"].unique().to_list() == ["ehr+cxr+rep"]
    noimp = six.filter(pl.col("series") == "without imputation").sort("x")
    assert noimp["mean"][-1] == pytest.approx(BASE.mean() + 0.1 - 0.2 * 0.9)
    assert len(six) == 2 * len(RATES)


def _history(fold, epochs=6):
    return [
        {"epoch": e, "loss_total": 1.0 / e, "val_auroc": 0.6 + 0.02 * e + 0.01 * fold, "val_auprc": 0.5,
         "val_loss": 0.5, "imp_cos": 0.1 * e, "imp_cos_ehr": 0.1 * e - 0.05, "imp_cos_cxr": 0.1 * e + 0.05,
         "imp_r2": 0.05 * e, "imp_r2_ehr": 0.05 * e, "imp_r2_cxr": 0.05 * e, "lazy": "ehr"}
        for e in range(1, epochs + 1 - fold % 2)
    ]  # fmt: skip


def test_fig7_mean_over_folds_that_reached_each_epoch(tmp_path):
    run_dir = make_run(
        tmp_path, Run("lung", "subtype", "omnifuse", "ct+pet+rep"), list(BASE[:3]),
        history=[_history(k) for k in range(3)],
    )  # fmt: skip
    data = fig7_data(read_histories(run_dir))
    assert set(data["series"]) == {"all modalities", "ehr", "cxr", "validation AUROC"}
    assert set(data["panel"]) == {"imputation similarity", "imputation R²", "validation AUROC"}
    r2 = data.filter((pl.col("panel") == "imputation R²") & (pl.col("series") == "all modalities")).sort("x")
    assert r2["mean"][0] == pytest.approx(0.05)
    val = data.filter(pl.col("series") == "validation AUROC").sort("x")
    assert val["n_folds"].to_list() == [3, 3, 3, 3, 3, 2]
    assert val["mean"][0] == pytest.approx(0.62 + 0.01)
    assert val["mean"][-1] == pytest.approx(0.72 + 0.01)  # folds 0 and 2 only
    plain = make_run(tmp_path, Run("lung", "subtype", "concat", "ct+pet"), list(BASE[:3]))
    with pytest.raises(ReportError, match="imp_cos"):
        fig7_data(read_histories(plain))


def _cli_runs(root, fig):
    if fig == "fig2":
        return _fig2_runs(root)
    if fig == "fig7":
        return [make_run(root, Run("lung", "subtype", "omnifuse", "ct+pet+rep"), list(BASE[:2]),
                         history=[_history(k) for k in range(2)])]  # fmt: skip
    return _curve_runs(root)


@pytest.mark.parametrize("fig", ["fig4", "fig5", "fig6", "fig7"])
def test_cli_figures_write_png_pdf_and_tidy(tmp_path, fig):
    out = tmp_path / "figures" / f"{fig}.png"
    dirs = _cli_runs(tmp_path / "runs", fig)
    assert main(["report", fig, "--run", *map(str, dirs), "--out", str(out), "--dpi", "40"]) == 0
    assert out.stat().st_size > 500 and out.with_suffix(".pdf").stat().st_size > 500
    assert len(pl.read_csv(out.with_name(f"{fig}.tidy.csv"))) > 0


def test_cli_figure_is_deterministic_and_style_never_changes_tidy(tmp_path):
    out = tmp_path / "figures" / "fig2.png"
    args = ["report", "fig2", "--run", *map(str, _fig2_runs(tmp_path / "runs")), "--out", str(out)]
    args += ["--dpi", "60"]
    assert main(args) == 0
    tidy = out.with_name("fig2.tidy.csv")
    first = {p: p.read_bytes() for p in (out, out.with_suffix(".pdf"), tidy)}
    assert b"CreationDate" not in first[out.with_suffix(".pdf")]
    assert len(pl.read_csv(tidy)) == 4 * 3
    assert main(args) == 0
    assert {p: p.read_bytes() for p in first} == first  # byte-identical reruns
    assert main([*args, "--dpi", "50", "--font-size", "6", "--fig-width", "4", "--colormap", "viridis"]) == 0
    assert tidy.read_bytes() == first[tidy]  # style changes the picture, never the numbers
    assert out.read_bytes() != first[out]


def test_cli_figure_out_must_be_png(tmp_path):
    dirs = _fig2_runs(tmp_path / "runs")
    assert main(["report", "fig2", "--run", *map(str, dirs), "--out", str(tmp_path / "fig2.csv")]) == 2
