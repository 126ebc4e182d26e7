"""What ``rule all`` builds: the demo data (when generated), every cohort, cache, table and figure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnifuse.workflow.cohorts import cohort_targets
from omnifuse.workflow.features import feature_targets
from omnifuse.workflow.runs import report_targets


def all_targets(config: Mapping[str, Any]) -> list[str]:
    synthetic = [spec["out"] for spec in config["synthetic"].values() if spec["enabled"]]
    return synthetic + cohort_targets(dict(config)) + feature_targets(dict(config)) + report_targets(config)
