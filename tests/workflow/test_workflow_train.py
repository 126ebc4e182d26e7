"""Stages 2 and 3 in the workflow: the schemas mirror the dataclass defaults, the plan of runs, and one tiny
end-to-end run (generation, cohorts, caches, every training, every table and figure) after which dry
runs count exactly the jobs a change reruns."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys

import polars as pl
import pytest
import yaml

from omnifuse.workflow.checks import coerce_config
from omnifuse.workflow.runs import train_arguments, train_settings
from tests.helpers import (
    REPO,
    SCHEMAS,
    TINY,
    planned_caches,
    planned_jobs,
    snakemake,
    validate_config,
    write_config,
)

ARTEFACTS = [
    "results/table2.csv",
    "results/table3.csv",
    "results/table4.csv",
    *(f"results/figures/fig{n}.png" for n in (2, 4, 5, 6, 7, 8)),
]


def test_stage2_schemas_are_generated_from_the_dataclasses():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "stage2_schemas.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_shipped_configs_validate_and_typos_are_rejected():
    demo = validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    assert demo["train"]["max_epochs"] == 10 and demo["train"]["batch_size"] == 64  # default filled in
    assert demo["methods"]["omnifuse"]["k"] == 5 and demo["methods"]["omnifuse"]["cra_hidden"] == 64
    assert demo["experiments"]["table3"]["reference"] == "omnifuse-b"
    raw_demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for name in ("mimic.yaml", "lung.yaml"):  # merged over the demo, as --configfile does
        shipped = yaml.safe_load((REPO / "config" / name).read_text())
        real = validate_config(_merge(copy.deepcopy(raw_demo), copy.deepcopy(shipped)))
        assert real["encoders"]["d"] == 256 and real["train"]["max_epochs"] == 50
        assert real["features"]["image"]["weights"] == "imagenet"
        assert real["methods"]["omnifuse"]["cra_hidden"] == 256
        assert len(real["experiments"]["missing"]["rates"]) == 9
        # every training value the demo shrinks or changes is set again for real data, per task too
        for section in ("train", "encoders", "methods"):
            restated = set(_leaves(shipped[section]))
            for key in _leaves(raw_demo[section]):
                assert key in restated, f"{name}: {section}.{key} keeps the demo's value"
        for ds, entry in real["datasets"].items():
            if entry.get("enabled", True):
                restated = set(_leaves(shipped["datasets"][ds].get("train", {})))
                for key in _leaves(raw_demo["datasets"][ds].get("train", {})):
                    assert key in restated, f"{name}: datasets.{ds}.train.{key} keeps the demo's value"
        assert real["train"]["lr"] == 0.001 and real["train"]["precision"] == "auto"
        # the demo's one-thread extraction jobs suit its small cohorts, not real data
        assert real["features"]["threads"] == 2 and real["features"]["num_workers"] == -1
    for bad, word in (
        ({"train": {"max_epoch": 3}}, "max_epoch"),
        ({"methods": {"omnifuse": {"lambda4": 1}}}, "lambda4"),
        ({"methods": {"omnifuse2": {}}}, "omnifuse2"),
        ({"encoders": {"d": "big"}}, "big"),
        ({"experiments": {"table4": {"rows": ["g"]}}}, "g"),
        ({"report": {"dpi": "high"}}, "high"),
    ):
        with pytest.raises(Exception, match=word):
            validate_config(bad)
    for per_task, words in (  # a dataset's per-task trainer settings
        (
            {"pheno": {"max_epoch": 20}},
            r"datasets\.mimic\.train\.pheno: unknown trainer settings \['max_epoch'\]",
        ),
        ({"pheno": {"max_epochs": "many"}}, r"datasets\.mimic\.train\.pheno\.max_epochs: 'many' is not"),
        ({"phenotyping": {"max_epochs": 20}}, "phenotyping"),
    ):
        config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
        config["datasets"]["mimic"]["train"] = per_task
        with pytest.raises(Exception, match=words):
            validate_config(config)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["datasets"]["mimic"]["train"] = {"pheno": {"max_epochs": "20", "lr": "1e-3"}}  # as --config gives
    coerce_config(config, SCHEMAS)
    assert validate_config(config)["datasets"]["mimic"]["train"]["pheno"] == {"max_epochs": 20, "lr": 0.001}
    config["datasets"]["mimic"]["tasks"] = ["ihm"]  # settings of a task not run: checked, unused
    validate_config(config)


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    """Dotted keys of a nested mapping's leaves."""
    out: list[str] = []
    for key, value in tree.items():
        out += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return out


def _merge(base: dict, extra: dict) -> dict:
    """Snakemake's recursive config update."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _demo_config() -> dict:
    return validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))


def test_a_run_gets_its_own_method_settings_and_its_missingness():
    config = _demo_config()
    w = {
        "dataset": "mimic",
        "task": "ihm",
        "variant": "omnifuse-c",
        "combo": "ehr+cxr",
        "setting": "complete",
    }
    s = train_settings(config, w)
    assert s["method"]["tla"] is False and s["method"]["imp_fw"] is True and s["method"]["d"] == 64
    assert s["train"]["max_epochs"] == 10 and "missing_rate" not in s["train"]
    w2 = {**w, "variant": "gblend", "setting": "missing-cxr-30"}
    s2 = train_settings(config, w2)
    assert "cra_hidden" not in s2["method"] and s2["method"]["super_epoch"] == 3
    assert s2["train"]["missing_rate"] == 0.3 and s2["train"]["missing_modality"] == "cxr"
    args = train_arguments(s2)
    assert "train.missing_rate=0.3" in args and "method.super_epoch=3" in args
    assert "train.normalize=ehr=ehr_zscore" in args
    # the dataset's per-task trainer settings reach that task's runs only
    pheno = train_settings(config, {**w2, "task": "pheno"})["train"]
    assert config["datasets"]["mimic"]["train"]["pheno"] == {"max_epochs": 20, "patience": 5}
    assert (pheno["max_epochs"], pheno["patience"], pheno["missing_rate"]) == (20, 5, 0.3)
    assert (s2["train"]["max_epochs"], s2["train"]["patience"]) == (10, 3)
    assert "train.max_epochs=20" in train_arguments({"train": pheno, "method": {}})


def test_the_demo_plans_every_artefact_and_runs_once(tmp_path):
    write_config(tmp_path, yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    proc = snakemake(tmp_path, "-n", "--quiet=rules")
    planned = planned_jobs(proc)
    assert planned["table"] == 3 and planned["figure"] == 5 and planned["figure_embeddings"] == 1
    assert planned["train"] > 100
    only4 = planned_jobs(snakemake(tmp_path, "-n", "--quiet=rules", "results/table4.csv"))
    assert only4["train"] < planned["train"] / 2 and "figure" not in only4


def tiny_config() -> dict:
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["synthetic"]["mimic"]["options"]["n_stays"] = 120
    config["synthetic"]["lung"]["options"]["n_patients"] = 16
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["datasets"] = demo["datasets"]
    config["datasets"]["mimic"]["tasks"] = ["ihm"]
    config["cohort"] = {"n_folds": 2}
    config["features"] = {
        "device": "cpu", "precision": "fp32", "num_workers": 0, "threads": 1, "cxr": {"size": 32},
        "ct": {"size": 32, "max_slices": 4}, "pet": {"size": 32, "max_slices": 4},
        "rep": {"en": {"max_tokens": 32}, "zh": {"max_tokens": 64}},
    }  # fmt: skip
    config["train"] = {"max_epochs": 2, "patience": 1, "cohort_mode": "all"}
    config["encoders"] = {"d": 8, "ehr_hidden": 8, "ehr_layers": 1, "attn_hidden": 4}
    config["methods"] = {"omnifuse": {"cra_hidden": 8, "cra_latent": 4, "k": 2}}
    config["experiments"] = {
        "table2": {"targets": ["mimic/ihm", "lung/subtype"]},
        "table3": {"target": "mimic/ihm", "methods": ["concat", "gblend", "omnifuse-b"]},
        "table4": {"targets": ["lung/subtype"], "rows": ["a", "b", "f"]},
        "missing": {"target": "lung/subtype", "rates": [0.5], "modes": ["ct", "random"]},
        "fig6": {"target": "lung/subtype"},
        "fig7": {"target": "lung/subtype"},
        "fig8": {"target": "mimic/ihm"},
    }
    config["report"] = {"dpi": 50}
    return config


def _edited_copy(tmp_path, rel: str, append: str):
    """A copy of the workflow and package with one file edited (code hashes read the copy)."""
    root = tmp_path / "repo"
    if not root.exists():
        shutil.copytree(REPO / "workflow", root / "workflow")
        shutil.copytree(REPO / "omnifuse", root / "omnifuse", ignore=shutil.ignore_patterns("__pycache__"))
    target = root / rel
    target.write_text(target.read_text() + append)
    return root / "workflow" / "Snakefile"


def _dry(workdir, *args, snakefile=None, caches=None):
    """Job counts of a dry run (``caches``: a list that receives the planned feature caches)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile or REPO / "workflow" / "Snakefile"),
           "-d", str(workdir), "--cores", "2", "-n", *args]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(snakefile.parents[1]) if snakefile else os.environ.get("PYTHONPATH", ""),
    }
    # run from the work folder: `python -m` puts the current folder first on sys.path, which would import
    # the repository's package instead of the edited copy's
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if caches is not None:
        caches.extend(planned_caches(proc))
    return planned_jobs(proc)


def test_tiny_pipeline_builds_every_artefact_and_reruns_only_what_changed(tmp_path):
    work = tmp_path / "work"
    config = tiny_config()
    write_config(work, config)
    snakemake(work)
    for target in ARTEFACTS:
        assert (work / target).is_file(), target
        if target.endswith(".png"):
            assert (work / target.replace(".png", ".pdf")).stat().st_size > 0
    # the tables have the paper's rows and columns, the tidy CSVs one row per run x fold x metric
    t3 = pl.read_csv(work / "results/table3.csv")
    assert t3.height == 4 and {"Concat", "G-Blend", "DWFuse"} <= set(t3.columns)
    t4 = pl.read_csv(work / "results/table4.csv")
    assert t4.height == 3 and {"ct+pet", "ct+pet+rep"} <= set(t4.columns)
    t2 = pl.read_csv(work / "results/table2.csv")
    assert t2.height == 8  # 4 combinations x 2 tasks
    tidy3 = pl.read_csv(work / "results/tidy/table3.csv")
    assert set(tidy3["metric"]) == {"auroc", "auprc"} and tidy3.height == 4 * 3 * 2 * 2
    summary = json.loads(
        (work / "results/lung/runs/subtype/omnifuse/ct+pet+rep/complete/summary.json").read_text()
    )
    assert summary["folds"] == [0, 1]
    assert (work / "logs/train/lung/subtype/omnifuse/ct+pet+rep/complete.log").is_file()
    assert (work / "benchmarks/train/lung/subtype/omnifuse/ct+pet+rep/complete.tsv").is_file()
    assert _dry(work) == {}
    # the browsable report: every table and figure, captions with the data source and weights
    snakemake(work, "--report", str(work / "report.html"))
    html = (work / "report.html").read_text(errors="replace")
    assert "SYNTHETIC demo data" in html and "RANDOMLY INITIALISED" in html
    assert "fig8.png" in html and "table3.csv" in html

    runs = {t: n for t, n in _dry(work, "--forceall").items()}
    gblend_runs = 4  # table3: one per combination of mimic/ihm

    # one method's hyperparameter: that method's runs and the tables that read them
    changed = tiny_config()
    changed["methods"]["gblend"] = {"super_epoch": 2}
    write_config(work, changed)
    assert _dry(work) == {"train": gblend_runs, "table": 1, "all": 1}
    write_config(work, config)
    assert _dry(work) == {}
    # a dataset's per-task trainer setting: that task's runs and what reads them
    lung_runs = len(list((work / "results/lung/runs").glob("*/*/*/*/summary.json")))
    per_task = tiny_config()
    per_task["datasets"]["lung"]["train"] = {"subtype": {"patience": 7}}
    write_config(work, per_task)
    planned = _dry(work)
    assert planned["train"] == lung_runs > 0 and set(planned) <= {"train", "table", "figure", "all"}
    write_config(work, config)
    # editing that method's file: the same jobs
    snakefile = _edited_copy(tmp_path, "omnifuse/methods/gblend.py", "\n# edited\n")
    assert _dry(work, snakefile=snakefile) == {"train": gblend_runs, "table": 1, "all": 1}
    # editing feature extraction code: extraction and everything after it (no generation, no cohorts)
    snakefile = _edited_copy(tmp_path, "omnifuse/features/resnet.py", "\n# edited\n")
    caches: list[str] = []
    after = _dry(work, snakefile=snakefile, caches=caches)
    assert "synth_mimic" not in after and "cohort" not in after and "ehr_features" not in after
    assert caches == ["lung/subtype/ct", "lung/subtype/pet", "mimic/ihm/cxr"]
    assert after["table"] == 3 and after["figure"] == runs["figure"]
    assert 0 < after["train"] <= runs["train"]
    # report styling: the reports only
    styled = tiny_config()
    styled["report"] = {"dpi": 60, "decimals": 2}
    write_config(work, styled)
    assert _dry(work) == {"table": 3, "figure": 5, "figure_embeddings": 1, "all": 1}


def test_cluster_generic_profile_runs_jobs_through_the_submit_command(tmp_path):
    """The cluster path: every job goes through the profile's submit script (which runs it locally)."""
    work = tmp_path / "work"
    config = tiny_config()
    config["synthetic"]["mimic"]["enabled"] = False
    config["datasets"]["mimic"]["enabled"] = False
    off = {"enabled": False}
    config["experiments"] = {"table2": {"targets": ["lung/subtype"]}, "table3": off, "table4": off,
                             "missing": off, "fig6": off, "fig7": off, "fig8": off}  # fmt: skip
    write_config(work, config)
    submit = REPO / "workflow" / "profiles" / "cluster-generic" / "submit.sh"
    target = "results/lung/runs/subtype/concat/ct+pet/complete"
    profile = str(REPO / "workflow" / "profiles" / "cluster-generic")
    command = f"{submit} {{threads}} {{resources.mem_mb}}"
    proc = snakemake(work, "--profile", profile, "--cluster-generic-submit-cmd", command, target)
    submitted = [line for line in proc.stderr.splitlines() if line.startswith("submit: ")]
    assert len(submitted) == 6, proc.stderr[-3000:]  # synth, cohort, 3 caches, the run
    assert any("mem_mb=4000" in line for line in submitted)
    assert json.loads((work / target / "summary.json").read_text())["folds"] == [0, 1]
