"""Stage-0 rules (workflow/rules/cohort.smk): cohort and EHR inputs, ``omnifuse cohort`` options, targets."""

from __future__ import annotations

from typing import Any

from snakemake.exceptions import WorkflowError

from omnifuse.workflow.common import dataset, source_path

COHORT_TASKS = {"mimic": ("ihm", "pheno"), "manifest": ("subtype",)}


def ehr_source(config: dict[str, Any], name: str) -> str:
    return source_path(config, dataset(config, name)["ehr"]["path"], f"datasets.{name}.ehr.path")


def cohort_inputs(config: dict[str, Any], name: str, task: str) -> dict[str, str]:
    """Inputs of ``omnifuse cohort`` for a dataset and task (sources, events, definition files)."""
    ds = dataset(config, name)
    if task not in COHORT_TASKS[ds["kind"]]:
        raise WorkflowError(f"task {task!r} is not available for datasets of kind {ds['kind']!r} ({name})")
    inputs = {}
    if ds["kind"] == "mimic":
        inputs["ehr"] = ehr_source(config, name)
        inputs["events"] = f"results/{name}/ehr/events.parquet"
        for key in ("cxr", "reports"):
            if ds[key]["path"]:
                inputs[key] = source_path(config, ds[key]["path"], f"datasets.{name}.{key}.path")
        if task == "pheno" and config["cohort"]["phenotypes"]:
            inputs["phenotypes"] = config["cohort"]["phenotypes"]
    else:
        inputs["manifest"] = source_path(config, ds["manifest"], f"datasets.{name}.manifest")
    split = config["cohort"]["split_files"].get(name, "")
    if split:
        inputs["split"] = split
    return inputs


def cohort_options(config: dict[str, Any], name: str, task: str) -> dict[str, Any]:
    """``omnifuse cohort`` options (for ``cli_flags``): the dataset's sources and the cohort section."""
    ds = dataset(config, name)
    options: dict[str, Any] = {
        "dataset": name,
        "kind": ds["kind"],
        "task": task,
        "modalities": ds["modalities"],
    }
    if ds["kind"] == "mimic":
        options.update(
            ehr_format=ds["ehr"]["format"],
            ehr_path=ds["ehr"]["path"],
            ehr_events=f"results/{name}/ehr/events.parquet",
            cxr_path=ds["cxr"]["path"],
            reports_path=ds["reports"]["path"],
        )
    else:
        options.update(manifest=ds["manifest"], label_column=ds["label_column"], classes=ds["classes"])
    options.update({k: v for k, v in config["cohort"].items() if k != "split_files"})
    options["split_file"] = config["cohort"]["split_files"].get(name, "")
    return options


def cohort_targets(config: dict[str, Any]) -> list[str]:
    """Cohort tables of every enabled dataset and task, plus the EHR caches of MIMIC datasets."""
    targets = []
    for name, ds in config["datasets"].items():
        if not ds["enabled"]:
            continue
        for task in ds["tasks"]:
            if task not in COHORT_TASKS[ds["kind"]]:
                raise WorkflowError(f"datasets.{name}.tasks: {task!r} is not a task of kind {ds['kind']!r}")
            targets.append(f"results/{name}/cohorts/{task}.parquet")
            if ds["kind"] == "mimic" and "ehr" in ds["modalities"]:
                targets.append(f"results/{name}/features/{task}/ehr.h5")
    return targets
