"""Code hashes from the import closure (omnifuse/workflow/code.py): an edit to a module changes exactly
the hashes of the jobs whose code imports it. Every case edits a copy of the package."""

from __future__ import annotations

import shutil

import pytest

from omnifuse.features import INPUT_MODULES
from omnifuse.methods import METHOD_NAMES
from omnifuse.workflow.code import CodeError, closure, code_hash, job_entries, job_hashes
from tests.helpers import REPO

TRAIN = {f"train/{m}" for m in METHOD_NAMES}
FEATURES = {f"features/{m}" for m in INPUT_MODULES}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo") / "omnifuse"
    shutil.copytree(REPO / "omnifuse", root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def changed_by(package, rel: str, text: str = "\n# edited\n") -> set[str]:
    """The jobs whose hash changes when ``text`` is appended to ``rel`` (restored afterwards)."""
    path = package / rel
    before_text = path.read_text()
    before = job_hashes(package)
    try:
        path.write_text(before_text + text)
        after = job_hashes(package)
    finally:
        path.write_text(before_text)
    return {k for k in before if before[k] != after[k]}


@pytest.mark.parametrize(
    ("rel", "jobs"),
    [
        ("methods/gblend.py", {"train/gblend"}),  # the registry imports it, but only its runs use it
        ("methods/omnifuse.py", {"train/omnifuse", "fig8"}),  # fig8 imports the class directly
        ("features/resnet.py", {"features/cxr", "features/ct", "features/pet"}),
        ("features/text_model.py", {"features/rep"}),
        ("features/engine.py", FEATURES),
        ("cohorts/ehr/discretizer.py", {"ehr_features"}),
        ("resources/ehr_channels.yaml", {"ehr_events", "cohort", "ehr_features"}),
        ("resources/phenotypes_demo.yaml", {"cohort", "synth/mimic"}),
        ("synth/cxr_image.py", {"synth/mimic"}),
        ("report/tables.py", {"table"}),
        ("report/figures.py", {"figure", "fig8"}),
        ("nn/encoders.py", TRAIN | {"fig8"}),
        ("train/loop.py", TRAIN | {"fig8"}),
        ("cli/report.py", {"table", "figure", "fig8"}),
    ],
)
def test_an_edit_changes_exactly_the_jobs_that_import_the_file(package, rel, jobs):
    assert changed_by(package, rel) == jobs
    owners = {k for k, entries in job_entries().items() if package / rel in closure(entries, package)}
    assert owners == jobs  # the hashes follow the closure


def test_a_new_import_extends_the_closure(package):
    assert "features/text_model.py" not in {
        str(p.relative_to(package)) for p in closure(job_entries()["train/sum"], package)
    }
    sum_py = package / "methods" / "sum.py"
    original = sum_py.read_text()
    try:
        sum_py.write_text(
            original + "\n\ndef _lazy():\n    from omnifuse.features import text_model  # noqa\n"
        )
        assert changed_by(package, "features/text_model.py") == {"features/rep", "train/sum"}
    finally:
        sum_py.write_text(original)


def test_hashes_do_not_depend_on_where_the_repository_lives(package):
    assert job_hashes(package) == job_hashes(REPO / "omnifuse")


def test_unknown_entry_points_are_errors_naming_them(package):
    with pytest.raises(CodeError, match=r"no module 'omnifuse\.nope'"):
        code_hash("omnifuse.nope", root=package)
    with pytest.raises(CodeError, match="has no function '_cmd_nope'"):
        code_hash("omnifuse.cli.train:_cmd_nope", root=package)
