"""Stage-3 tables: collection of run outputs, Table 2/3/4 contents, significance marker, CLI."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from omnifuse.cli import main
from omnifuse.formats.run import Run
from omnifuse.report.collect import ReportError, collect
from omnifuse.report.runs import parse_run_dir, sort_combos
from omnifuse.report.stats import paired_p, significance
from omnifuse.report.tables import table2, table3, table4
from tests.helpers import make_run

BASE = np.array([0.70, 0.72, 0.69, 0.71, 0.73])
NOISE = np.array([0.01, -0.02, 0.015, -0.005, 0.0])


def test_parse_run_dir_round_trips_and_rejects_other_paths():
    run = Run("mimic", "ihm", "omnifuse", "ehr+cxr", "missing-ehr-30")
    assert parse_run_dir(f"/x/{run.dir}") == run
    assert parse_run_dir(run.dir).missing == ("ehr", 0.3)
    with pytest.raises(ValueError, match="not a run directory"):
        parse_run_dir("/tmp/a/b/c/d/e/f")
    with pytest.raises(ValueError, match="bad run setting"):
        parse_run_dir("results/mimic/runs/ihm/concat/ehr+cxr/oops")


def test_sort_combos_pairs_then_all_in_dataset_order():
    combos = ["cxr+rep", "ehr+cxr+rep", "ehr+rep", "ehr+cxr"]
    assert sort_combos(combos) == ["ehr+cxr", "ehr+rep", "cxr+rep", "ehr+cxr+rep"]


# ----- collect -----
def test_collect_is_tidy_one_row_per_run_fold_metric(tmp_path):
    dirs = [
        make_run(tmp_path, Run("mimic", "ihm", "concat", "ehr+cxr"), list(BASE)),
        make_run(tmp_path, Run("mimic", "ihm", "omnifuse", "ehr+cxr", "missing-random-30"), list(BASE)),
    ]
    tidy = collect(dirs)
    assert len(tidy) == 2 * 5 * 2
    assert tidy.columns == [
        "dataset", "task", "variant", "label", "combo", "setting", "missing_mode", "missing_rate", "fold",
        "metric", "value",
    ]  # fmt: skip
    row = tidy.filter(
        (pl.col("variant") == "omnifuse") & (pl.col("fold") == 2) & (pl.col("metric") == "auroc")
    )
    assert row["missing_mode"][0] == "random" and row["missing_rate"][0] == pytest.approx(0.3)
    assert row["value"][0] == pytest.approx(BASE[2])
    assert set(tidy["label"]) == {"Concat", "OmniFuse"}


def test_collect_errors_name_the_missing_fold_the_nan_and_fold_disagreement(tmp_path):
    good = make_run(tmp_path, Run("mimic", "ihm", "concat", "ehr+cxr"), list(BASE))
    bad = make_run(tmp_path, Run("mimic", "ihm", "sum", "ehr+cxr"), list(BASE))
    (bad / "fold3" / "metrics.json").unlink()
    with pytest.raises(ReportError, match=r"fold3/metrics.json: missing"):
        collect([good, bad])
    nan = make_run(tmp_path, Run("mimic", "ihm", "pmr", "ehr+cxr"), list(BASE))
    path = nan / "fold1" / "metrics.json"
    payload = json.loads(path.read_text())
    payload["auroc"] = None  # how the writers store NaN
    path.write_text(json.dumps(payload))
    with pytest.raises(ReportError, match=r"pmr/ehr\+cxr/complete/fold1/metrics.json: auroc is NaN"):
        collect([nan])
    path.write_text("{not json")
    with pytest.raises(ReportError, match="corrupt"):
        collect([nan])
    three = make_run(tmp_path, Run("mimic", "ihm", "medfuse", "ehr+cxr"), list(BASE[:3]))
    with pytest.raises(ReportError, match="disagree on folds"):
        collect([good, three])
    with pytest.raises(ReportError, match="not found"):
        collect([tmp_path / Run("mimic", "ihm", "gblend", "ehr+cxr").dir])


# ----- significance -----
def test_paired_p_degenerate_cases_are_deterministic():
    assert paired_p(BASE, BASE) == 1.0
    assert paired_p(BASE + 0.05, BASE) == 0.0
    assert np.isnan(paired_p(BASE[:1], BASE[:1]))
    assert 0.0 < paired_p(BASE + NOISE + 0.005, BASE) < 1.0


def _folds(values):
    return {k: float(v) for k, v in enumerate(values)}


def test_significance_needs_higher_mean_and_every_p_below_alpha():
    ref = _folds(BASE + 0.05 + NOISE / 5)
    clear = {"concat": _folds(BASE), "sum": _folds(BASE + 0.01)}
    assert significance(ref, clear).marked
    tie = {**clear, "pmr": _folds(BASE + 0.05 + NOISE / 5)}  # a competitor ties exactly
    res = significance(ref, tie)
    assert not res.marked and res.p_values["pmr"] == 1.0
    noisy = {"concat": _folds(BASE + 0.04 + 3 * NOISE)}  # lower mean, but not significantly
    res = significance(ref, noisy)
    assert res.reference_mean > res.best_other_mean and res.p_max > 0.05 and not res.marked
    assert not significance(_folds(BASE[:1] + 0.1), {"concat": _folds(BASE[:1])}).marked
    assert not significance(_folds(BASE), {"concat": _folds(BASE + 0.05)}).marked  # constant, but lower


# ----- tables -----
def _table2_runs(root):
    runs = {
        ("unimodal", "ehr"): BASE + 0.05,
        ("unimodal", "cxr"): BASE - 0.05,
        ("unimodal", "rep"): BASE,
        ("concat", "ehr+cxr"): BASE + 0.02,  # below ehr alone: drop -0.03
        ("concat", "ehr+rep"): BASE + 0.06,
        ("concat", "cxr+rep"): BASE - 0.01,
        ("concat", "ehr+cxr+rep"): BASE + 0.04,
    }
    return [make_run(root, Run("mimic", "ihm", v, c), list(s)) for (v, c), s in runs.items()]


def test_table2_best_single_and_signed_drop(tmp_path):
    human = table2(collect(_table2_runs(tmp_path)), decimals=3)
    assert human.columns == [
        "dataset", "task", "combination", "best_single", "best_single_auroc", "concat_auroc", "drop_auroc",
        "best_single_auprc", "concat_auprc", "drop_auprc",
    ]  # fmt: skip
    rows = {r["combination"]: r for r in human.iter_rows(named=True)}
    assert list(rows) == ["ehr+cxr", "ehr+rep", "cxr+rep", "ehr+cxr+rep"]
    assert rows["ehr+cxr"]["best_single"] == "ehr"
    assert rows["ehr+cxr"]["drop_auroc"] == "-0.030"
    assert rows["ehr+rep"]["drop_auroc"] == "+0.010"
    assert rows["cxr+rep"]["best_single"] == "rep" and rows["cxr+rep"]["drop_auroc"] == "-0.010"
    assert rows["ehr+cxr"]["best_single_auroc"] == f"{(BASE + 0.05).mean():.3f} ± {BASE.std(ddof=1):.3f}"
    assert rows["ehr+cxr"]["drop_auprc"] == "-0.030"


METHODS = ["concat", "sum", "se_gate", "gblend", "ogm_ge", "pmr", "medfuse", "omnifuse-b"]


def _table3_runs(root, dwfuse_pair, tie_method=None):
    dirs = []
    for i, v in enumerate(METHODS[:-1]):
        for combo in ("ehr+cxr", "ehr+cxr+rep"):
            scores = BASE + 0.004 * i + NOISE * (i % 3) / 4
            if combo == "ehr+cxr+rep" and v == tie_method:
                scores = BASE + 0.08
            dirs.append(make_run(root, Run("mimic", "ihm", v, combo), list(scores)))
    dirs.append(make_run(root, Run("mimic", "ihm", "omnifuse-b", "ehr+cxr"), list(dwfuse_pair)))
    dirs.append(make_run(root, Run("mimic", "ihm", "omnifuse-b", "ehr+cxr+rep"), list(BASE + 0.08)))
    return dirs


def test_table3_marker_exactly_when_dwfuse_beats_all_significantly(tmp_path):
    tidy = collect(_table3_runs(tmp_path / "a", BASE + 0.06 + NOISE / 10))
    human, pvalues = table3(tidy, METHODS, "omnifuse-b", 0.05, decimals=3)
    assert human.columns == [
        "dataset", "task", "combination", "Concat", "Sum", "SE-Gate", "G-Blend", "OGM-GE", "PMR", "MedFuse",
        "DWFuse", "p_max",
    ]  # fmt: skip
    rows = {r["combination"]: r for r in human.iter_rows(named=True)}
    assert rows["ehr+cxr"]["DWFuse"].endswith("*") and rows["ehr+cxr"]["p_max"] < 0.05
    # all three: constant +0.08 over... every competitor is below, and differences vary per method
    assert rows["ehr+cxr+rep"]["DWFuse"].endswith("*")
    assert not any(str(rows["ehr+cxr"][c]).endswith("*") for c in ("Concat", "Sum", "MedFuse"))
    assert len(pvalues) == 2 * 7 and set(pvalues["competitor"]) == set(METHODS[:-1])
    # a tie with one competitor removes the marker of that combination only
    tidy = collect(_table3_runs(tmp_path / "b", BASE + 0.06 + NOISE / 10, tie_method="pmr"))
    rows = {r["combination"]: r for r in table3(tidy, METHODS)[0].iter_rows(named=True)}
    assert not rows["ehr+cxr+rep"]["DWFuse"].endswith("*")
    assert rows["ehr+cxr"]["DWFuse"].endswith("*")
    # noisy differences: higher mean, not significant
    tidy = collect(_table3_runs(tmp_path / "c", BASE + 0.03 + 4 * NOISE))
    rows = {r["combination"]: r for r in table3(tidy, METHODS)[0].iter_rows(named=True)}
    assert not rows["ehr+cxr"]["DWFuse"].endswith("*")


def test_table3_missing_method_run_is_a_clear_error(tmp_path):
    dirs = _table3_runs(tmp_path, BASE + 0.06)
    dirs = [d for d in dirs if "/gblend/ehr+cxr/" not in str(d) + "/"]
    with pytest.raises(ReportError, match=r"missing run results/mimic/runs/ihm/gblend/ehr\+cxr/complete"):
        table3(collect(dirs), METHODS)


def test_table4_layout_rows_by_columns(tmp_path):
    variants = {"a": "omnifuse-a", "b": "omnifuse-b", "c": "omnifuse-c", "d": "omnifuse-d", "e": "omnifuse-e",
                "f": "omnifuse"}  # fmt: skip
    dirs = [
        make_run(tmp_path, Run("lung", "subtype", v, c), list(BASE + 0.01 * i))
        for i, v in enumerate(variants.values())
        for c in ("ct+pet+rep", "ct+pet", "pet+rep", "ct+rep")
    ]
    human = table4(collect(dirs), decimals=2)
    assert human.columns == ["dataset", "task", "row", "ct+pet", "ct+rep", "pet+rep", "ct+pet+rep"]
    assert human["row"].to_list()[0] == "(a) none (concatenation)"
    assert human["row"].to_list()[-1].startswith("(f)")
    assert human.filter(pl.col("row").str.starts_with("(f)"))["ct+pet"][0] == (
        f"{(BASE + 0.05).mean():.2f} ± {BASE.std(ddof=1):.2f}"
    )
    only = table4(collect(dirs), rows=["a", "f"])
    assert len(only) == 2


def test_cli_tables_write_human_and_tidy_csv_style_never_changes_tidy(tmp_path):
    dirs = [str(d) for d in _table3_runs(tmp_path / "runs", BASE + 0.06 + NOISE / 10)]
    out, tidy = tmp_path / "t3.csv", tmp_path / "t3.tidy.csv"
    args = ["report", "table3", "--run", *dirs, "--out", str(out), "--tidy", str(tidy)]
    assert main([*args, "--pvalues", str(tmp_path / "p.csv")]) == 0
    first = tidy.read_bytes()
    human = pl.read_csv(out)
    assert len(human) == 2 and human["DWFuse"][0].endswith("*")
    assert len(pl.read_csv(tidy)) == len(dirs) * 5 * 2
    assert (tmp_path / "p.csv").exists()
    assert main([*args, "--decimals", "2", "--marker", "†"]) == 0
    assert tidy.read_bytes() == first
    assert pl.read_csv(out)["DWFuse"][0].endswith("†")
    t2 = [str(d) for d in _table2_runs(tmp_path / "runs2")]
    assert main(["report", "table2", "--run", *t2, "--out", str(tmp_path / "t2.csv")]) == 0
    assert len(pl.read_csv(tmp_path / "t2.tidy.csv")) == 7 * 5 * 2
    # a broken run is a clean error exit, not a traceback
    (tmp_path / "runs2" / Run("mimic", "ihm", "concat", "ehr+cxr").dir / "fold0" / "metrics.json").unlink()
    assert main(["report", "table2", "--run", *t2, "--out", str(tmp_path / "t2.csv")]) == 2
