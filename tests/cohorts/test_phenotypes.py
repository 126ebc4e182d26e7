"""Phenotype definitions: the demo file and the real mimic3-benchmarks file."""

from __future__ import annotations

import pytest

from omnifuse.cohorts.phenotypes import load_phenotypes
from tests.helpers import shared_data


def test_demo_definitions_name_the_25_benchmark_groups_with_both_icd_versions():
    groups = load_phenotypes()
    assert len(groups) == 25
    assert [g.name for g in groups] == sorted(g.name for g in groups)
    for g in groups:
        assert g.codes and g.codes_icd10, g.name
        assert all(c[0].isdigit() for c in g.codes), g.name  # ICD-9 diagnosis codes here are numeric
        assert all(c[0].isalpha() for c in g.codes_icd10), g.name


def test_demo_icd9_codes_belong_to_the_same_group_in_the_real_hcup_file():
    hcup = load_phenotypes(shared_data("mimic3-benchmarks-resources", "hcup_ccs_2015_definitions.yaml"))
    assert [g.name for g in hcup] == [g.name for g in load_phenotypes()]
    real = {g.name: set(g.codes) for g in hcup}
    for g in load_phenotypes():
        assert set(g.codes) <= real[g.name], (g.name, set(g.codes) - real[g.name])


def test_bad_definition_files_name_the_file_and_group(tmp_path):
    bad = tmp_path / "defs.yaml"
    bad.write_text('"A":\n  use_in_benchmark: true\n')
    with pytest.raises(ValueError, match=r"defs.yaml.*'A'.*codes"):
        load_phenotypes(bad)
    bad.write_text(
        '"A":\n  use_in_benchmark: true\n  codes: ["1"]\n"B":\n  use_in_benchmark: true\n  codes: ["1"]\n'
    )
    with pytest.raises(ValueError, match="ICD-9 code 1 is listed in both 'A' and 'B'"):
        load_phenotypes(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_phenotypes(tmp_path / "missing.yaml")
