"""Fault injection, workflow and command line: misspelled data paths fail at parse time naming the key
and the path; nested ``--config`` values are typed by the schemas; captions state the data origin the
files show and the report job checks it against what the runs read; ``--folds`` keeps the overrides;
``--debug`` shows the traceback."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from omnifuse.cli import main
from omnifuse.formats.run import Run
from omnifuse.synth.toy import ToySpec, make_toy_run
from omnifuse.workflow.checks import coerce
from omnifuse.workflow.runs import expected_data, provenance
from tests.faults.common import assert_fails, run_cli
from tests.helpers import SCHEMAS, TINY, make_mimic, make_run, snakemake, validate_config, write_config


def mimic_config(ehr: str, cxr: str = "", reports: str = "") -> dict:
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["synthetic"] = {"mimic": {"enabled": False}, "lung": {"enabled": False}}
    config["datasets"] = {
        "mimic": {"kind": "mimic", "tasks": ["ihm"], "modalities": ["ehr", "cxr", "rep"],
                  "ehr": {"path": ehr}, "cxr": {"path": cxr}, "reports": {"path": reports}},
        "lung": {"kind": "manifest", "enabled": False, "tasks": ["subtype"],
                 "modalities": ["ct", "pet", "rep"]},
    }  # fmt: skip
    return config


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    return make_mimic(tmp_path_factory.mktemp("synth") / "mimic", n_stays=8)


@pytest.mark.parametrize(
    ("key", "bad", "why"),
    [
        ("ehr", "mimic-iv-typo", "does not exist"),
        ("cxr", "mimic-cxr-jpeg", "does not exist"),
        (
            "ehr",
            "mimic-cxr-reports",
            "is not a MIMIC-IV root: it has neither hosp/",
        ),  # an existing folder of the wrong kind
    ],
)
def test_misspelled_data_paths_fail_at_parse_time(hospital, tmp_path, key, bad, why):
    paths = {
        "ehr": hospital / "mimic-iv",
        "cxr": hospital / "mimic-cxr-jpg",
        "reports": hospital / "mimic-cxr-reports",
    }
    paths[key] = hospital / bad
    write_config(tmp_path, mimic_config(*(str(paths[k]) for k in ("ehr", "cxr", "reports"))))
    proc = snakemake(tmp_path, "-n", check=False)  # before: exit 0, report jobs captioned "real data"
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"datasets.mimic.{key}.path = '{paths[key]}' {why}" in text, text[-2000:]
    assert not (tmp_path / "results").exists()


def test_the_config_readme_example_validates():
    """Nested ``--config`` values arrive as strings; the schemas type them (in the Snakefile)."""
    raw = {"synthetic": {"mimic": {"options": {"n_stays": "500", "with_cxr": "false", "mortality": "0.2"}}},
           "features": {"ct": {"window": ["-1000", "400"]}}}  # fmt: skip
    typed = {s: coerce(v, yaml.safe_load((SCHEMAS / f"{s}.schema.yaml").read_text())) for s, v in raw.items()}
    options = typed["synthetic"]["mimic"]["options"]
    assert options == {"n_stays": 500, "with_cxr": False, "mortality": 0.2}
    assert typed["features"]["ct"]["window"] == [-1000, 400]
    validate_config(typed)
    with pytest.raises(Exception, match="'500' is not of type 'integer'"):
        validate_config(raw)  # what the Snakefile saw before


def test_the_config_readme_example_runs(tmp_path):
    write_config(tmp_path, TINY)
    proc = snakemake(tmp_path, "-n", "--config", 'synthetic={"mimic": {"options": {"n_stays": 500}}}',
                     check=False)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]


def test_captions_state_the_origin_the_files_show(hospital):
    """A dataset whose configured paths are an omnifuse synth output (not the generator's folder) is
    captioned synthetic: the marker file decides, not the config text."""
    config = validate_config(mimic_config(str(hospital / "mimic-iv"), str(hospital / "mimic-cxr-jpg"),
                                          str(hospital / "mimic-cxr-reports")))  # fmt: skip
    assert "mimic: SYNTHETIC demo data" in provenance(config, "table3")
    assert expected_data(config, "table3") == "--expect-data mimic=synthetic"


def test_the_report_refuses_runs_whose_data_origin_disagrees_with_the_caption(tmp_path, caplog):
    runs = [
        Run("mimic", "ihm", v, c)
        for v, c in (("unimodal", "ehr"), ("unimodal", "cxr"), ("concat", "ehr+cxr"))
    ]
    dirs = [make_run(tmp_path, r, [0.7, 0.8]) for r in runs]
    for d in dirs:  # what train records: the origin the cohort builder found (synthetic here)
        summary = json.loads((d / "summary.json").read_text())
        summary["config"] = {"inputs": {"cohort": {"dataset": "mimic", "synthetic": True}}}
        (d / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "table2.csv"
    args = ["report", "table2", "--run", *dirs, "--out", out]
    assert_fails([*args, "--expect-data", "mimic=real"], caplog, dirs[0], "real", "synthetic", absent=[out])
    assert run_cli([*args, "--expect-data", "mimic=synthetic"], caplog)[0] == 0 and out.is_file()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("folds", [["0"], ["0,1"], ["0", "1"]])
def test_folds_no_longer_swallow_overrides(tmp_path, caplog, folds):
    cohort, caches = make_toy_run(tmp_path, ToySpec(n=60, shapes={"ehr": (3, 76), "cxr": (1, 4)}))
    torch.set_num_threads(1)
    out = tmp_path / "run"
    args = ["train", "--cohort", cohort, "--cache", f"ehr={caches['ehr']}", "--cache", f"cxr={caches['cxr']}",
            "--method", "concat", "--out", out, "--folds", *folds, "train.max_epochs=2",
            "train.threads=1"]  # fmt: skip
    assert run_cli(args, caplog)[0] == 0  # before: "argument --folds: invalid int value"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folds"] == [int(k) for f in folds for k in f.split(",")]
    assert summary["config"]["train"]["max_epochs"] == 2


def test_debug_shows_the_traceback(tmp_path, caplog):
    args = ["predict", "--checkpoint", tmp_path / "none.pt", "--out", tmp_path / "p.parquet"]
    assert_fails(args, caplog, tmp_path / "none.pt", absent=[tmp_path / "p.parquet"])
    with pytest.raises(FileNotFoundError, match=r"none\.pt"):
        main(["--debug", *map(str, args)])
