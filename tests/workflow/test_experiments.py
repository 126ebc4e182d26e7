"""The experiment plan: which runs each table and figure needs (omnifuse/workflow/plan.py)."""

from __future__ import annotations

import pytest
import yaml

from omnifuse.formats.run import Run, parse_setting, setting_name
from omnifuse.workflow.plan import all_runs, plan, table4_variant
from tests.helpers import REPO, validate_config


def demo() -> dict:
    return validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))


def test_demo_plan_has_the_paper_layout():
    config = demo()
    p = plan(config["experiments"], config["datasets"])
    assert set(p) == {"table2", "table3", "table4", "fig2", "fig4", "fig5", "fig6", "fig7", "fig8"}
    assert len(p["table2"]) == 3 * 7  # 3 tasks x (3 unimodal + 4 concat)
    assert len(p["table3"]) == 4 * 8  # 4 combinations x 8 methods
    assert {r.variant for r in p["table4"]} == {"omnifuse-a", "omnifuse-b", "omnifuse-c", "omnifuse-d",
                                                "omnifuse-e", "omnifuse"}  # fmt: skip
    assert len(p["fig4"]) == 4 * 3 - 3  # 4 modes x (0, 0.5, 0.9), rate 0 shared
    assert {r.setting for r in p["fig6"]} <= {r.setting for r in p["fig5"]}
    assert len(all_runs(p)) == 120  # Table 4 row (a) is its own variant: 8 runs more than 112
    assert all(r.dataset in config["datasets"] for r in all_runs(p))


def test_disabled_datasets_are_left_out_and_unknown_ones_are_errors():
    config = demo()
    config["datasets"]["lung"]["enabled"] = False
    p = plan(config["experiments"], config["datasets"])
    assert "fig7" not in p and all(r.dataset == "mimic" for r in all_runs(p))
    assert plan(config["experiments"], {}) == {}  # nothing configured, nothing planned
    config["experiments"]["table3"]["target"] = "mimik/ihm"
    with pytest.raises(ValueError, match="mimik"):
        plan(config["experiments"], config["datasets"])
    config["experiments"]["table3"]["target"] = "mimic/ihm"
    config["datasets"]["mimic"]["tasks"] = ["ihm"]  # phenotyping not run: its targets are left out
    p = plan(config["experiments"], config["datasets"])
    assert "fig8" not in p and {r.task for r in p["table2"]} == {"ihm"}  # (lung is disabled above)
    config["experiments"]["table3"]["target"] = "mimic/los"
    with pytest.raises(ValueError, match="no task 'los'"):
        plan(config["experiments"], config["datasets"])


def test_settings_and_rows_round_trip():
    assert setting_name(None, 0) == "complete" and setting_name("ehr", 0.3) == "missing-ehr-30"
    assert parse_setting("missing-random-90") == ("random", 0.9)
    with pytest.raises(ValueError):
        parse_setting("missing-90")
    assert [table4_variant(r) for r in "abf"] == ["omnifuse-a", "omnifuse-b", "omnifuse"]
    assert Run("mimic", "ihm", "sum", "ehr+cxr").dir == "results/mimic/runs/ihm/sum/ehr+cxr/complete"
