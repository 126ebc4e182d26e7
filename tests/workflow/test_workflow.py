"""The Snakemake workflow: config schema, dry runs and a tiny real run in a temporary directory."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import yaml

from omnifuse.synth.lung import LungSynthConfig
from omnifuse.synth.mimic import MimicSynthConfig
from tests.helpers import (
    REPO,
    SCHEMA,
    SCHEMAS,
    TINY,
    planned_jobs,
    snakemake,
    validate_config,
    write_config,
)


@pytest.mark.parametrize(("section", "cls"), [("mimic", MimicSynthConfig), ("lung", LungSynthConfig)])
def test_schema_defaults_are_the_generator_defaults(section, cls):
    schema = yaml.safe_load((SCHEMAS / "synthetic.schema.yaml").read_text())
    props = schema["properties"][section]["properties"]["options"]["properties"]
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    assert set(props) == set(defaults)
    for name, value in defaults.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert props[name]["default"] == expected, name


def test_demo_config_validates_and_unknown_keys_are_rejected():
    config = validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    assert config["synthetic"]["mimic"]["options"]["layout"] == "v2"  # default filled in
    assert config["datasets"]["mimic"]["enabled"] is True
    with pytest.raises(Exception, match="n_stay"):
        validate_config({"synthetic": {"mimic": {"options": {"n_stay": 10}}}})
    with pytest.raises(Exception, match="mortality"):
        validate_config({"synthetic": {"mimic": {"options": {"mortality": 2}}}})
    with pytest.raises(Exception, match="nonsense"):
        validate_config({"nonsense": {}})
    with pytest.raises(Exception, match="tasks"):
        validate_config({"datasets": {"x": {"kind": "mimic", "modalities": ["ehr", "cxr"]}}})


def test_dry_run_from_the_repository_root():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_tiny_run_builds_the_targets_and_reruns_only_what_changed(tmp_path):
    write_config(tmp_path, TINY)
    planned = planned_jobs(snakemake(tmp_path, "-n"))
    assert planned == {"synth_mimic": 1, "synth_lung": 1, "all": 1}
    snakemake(tmp_path)
    mimic = tmp_path / "resources" / "synthetic" / "mimic"
    lung = tmp_path / "resources" / "synthetic" / "lung"
    assert (mimic / "mimic-iv" / "icu" / "chartevents.csv.gz").is_file()
    assert (mimic / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-metadata.csv.gz").is_file()
    assert (lung / "manifest.csv").is_file()
    for name in ("mimic", "lung"):
        assert (tmp_path / "logs" / "synth" / f"{name}.log").is_file()
        assert (tmp_path / "benchmarks" / "synth" / f"{name}.tsv").is_file()
    assert planned_jobs(snakemake(tmp_path, "-n")) == {}
    # changing one generator's option reruns that generator only
    changed = yaml.safe_load(yaml.safe_dump(TINY))
    changed["synthetic"]["mimic"]["options"]["mortality"] = 0.2
    write_config(tmp_path, changed)
    assert planned_jobs(snakemake(tmp_path, "-n")) == {"synth_mimic": 1, "all": 1}


def _leaf_keys(schema: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, sub in schema.get("properties", {}).items():
        dotted = f"{prefix}{name}"
        keys.extend(_leaf_keys(sub, f"{dotted}.") if sub.get("properties") else [dotted])
    return keys


def test_every_config_key_is_documented():
    documented = (REPO / "config" / "README.md").read_text()
    keys = []
    for section in yaml.safe_load(SCHEMA.read_text())["properties"]:
        path = SCHEMAS / f"{section}.schema.yaml"
        if path.is_file():
            keys += _leaf_keys(yaml.safe_load(path.read_text()), f"{section}.")
    keys += _leaf_keys(yaml.safe_load((SCHEMAS / "dataset.schema.yaml").read_text()), "datasets.<name>.")
    assert len(keys) > 40
    missing = [k for k in keys if f"`{k}`" not in documented]
    assert not missing, missing


def test_lint_and_formatting_are_clean():
    """`make lint` in test form: ruff, snakefmt and snakemake --lint (one documented exception)."""
    sources = ["omnifuse", "tests", "scripts", "workflow/profiles"]  # the profiles' submit/status scripts
    for cmd in (
        [sys.executable, "-m", "ruff", "check", *sources],
        [sys.executable, "-m", "ruff", "format", "--check", *sources],
        [sys.executable, "-m", "snakefmt", "--check", "workflow"],
        [sys.executable, "scripts/lint_workflow.py"],
    ):
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{' '.join(cmd[2:])}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
