"""Stage-2 and stage-3 rules (workflow/rules/train.smk, report.smk): runs, their inputs and arguments.

They take the validated workflow ``config`` explicitly (the rule files hold rules only) and turn the
experiment plan (:func:`omnifuse.workflow.plan.plan`) into run directories, job inputs and job arguments.
A training job's arguments depend only on the ``train`` and ``encoders`` sections and on the settings of
its own method (``methods.<method>``): changing one method's setting reruns only that method's runs.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from snakemake.exceptions import WorkflowError

from omnifuse.formats.cohort import synthetic_root as marked_synthetic
from omnifuse.formats.run import COMPLETE, Run, parse_setting
from omnifuse.workflow.common import enabled_datasets, synthetic_root
from omnifuse.workflow.plan import plan, variants

ARTEFACTS = ("table2", "table3", "table4", "fig2", "fig4", "fig5", "fig6", "fig7", "fig8")
TABLES = ("table2", "table3", "table4")
FIGURES = ("fig2", "fig4", "fig5", "fig6", "fig7", "fig8")
# (rule wildcard pattern) run directories: results/{dataset}/runs/{task}/{variant}/{combo}/{setting}
RUN_WILDCARDS = {
    "dataset": "[^/]+",
    "task": "[^/]+",
    "variant": "[a-z_]+(-[a-z]+)?",
    "combo": "[a-z]+(\\+[a-z]+)*",
    "setting": "complete|missing-[a-z]+-[0-9]+",
}


def artefact_runs(config: Mapping[str, Any]) -> dict[str, list[Run]]:
    """Runs each enabled table and figure reads (the experiment plan of the config)."""
    try:
        return plan(config["experiments"], config["datasets"])
    except ValueError as exc:
        raise WorkflowError(f"config: {exc}") from None


def artefact_path(name: str) -> str:
    return f"results/{name}.csv" if name in TABLES else f"results/figures/{name}.png"


def report_targets(config: Mapping[str, Any]) -> list[str]:
    """Every enabled table and figure (what ``rule all`` builds after the caches)."""
    runs = artefact_runs(config)
    return [artefact_path(name) for name in ARTEFACTS if name in runs]


def run_dirs(config: Mapping[str, Any], artefact: str) -> list[str]:
    runs = artefact_runs(config)
    if artefact not in runs:
        raise WorkflowError(
            f"{artefact_path(artefact)} is disabled in the config (experiments.*.enabled) or not planned"
        )
    return [r.dir for r in runs[artefact]]


def run_of(wildcards: Mapping[str, str]) -> Run:
    return Run(
        wildcards["dataset"],
        wildcards["task"],
        wildcards["variant"],
        wildcards["combo"],
        wildcards["setting"],
    )


def _check_run(config: Mapping[str, Any], run: Run) -> dict[str, Any]:
    ds = enabled_datasets(config).get(run.dataset)
    if ds is None:
        raise WorkflowError(f"{run.dir}: no enabled dataset {run.dataset!r} in the config")
    if run.task not in ds["tasks"]:
        raise WorkflowError(f"{run.dir}: dataset {run.dataset!r} has no task {run.task!r}")
    if run.variant not in variants():
        raise WorkflowError(f"{run.dir}: unknown method variant {run.variant!r}; known: {sorted(variants())}")
    unknown = [m for m in run.combo.split("+") if m not in ds["modalities"]]
    if unknown:
        raise WorkflowError(f"{run.dir}: {unknown} are not modalities of {run.dataset} {ds['modalities']}")
    try:
        parse_setting(run.setting)
    except ValueError as exc:
        raise WorkflowError(f"{run.dir}: {exc}") from None
    return ds


def train_inputs(config: Mapping[str, Any], wildcards: Mapping[str, str]) -> dict[str, str]:
    """The cohort table and every modality cache of the task (the modalities outside the run's
    combination define the paired cohort and serve OmniFuse as imputation targets)."""
    run = run_of(wildcards)
    ds = _check_run(config, run)
    base = f"results/{run.dataset}"
    inputs = {"cohort": f"{base}/cohorts/{run.task}.parquet"}
    for m in ds["modalities"]:
        inputs[m] = f"{base}/features/{run.task}/{m}.h5"
    return inputs


def task_train(config: Mapping[str, Any], dataset: str, task: str) -> dict[str, Any]:
    """The ``train`` section with the dataset's settings for ``task`` (``datasets.<name>.train.<task>``)
    applied over it."""
    per_task = (config["datasets"][dataset].get("train") or {}).get(task, {})
    return {**config["train"], **per_task}


def train_settings(config: Mapping[str, Any], wildcards: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``{"train": ..., "method": ...}``: every setting of one run (a rule param: what it holds is
    what reruns the job when it changes)."""
    run = run_of(wildcards)
    _check_run(config, run)
    method, fixed = variants()[run.variant]
    train = task_train(config, run.dataset, run.task)
    mode, rate = parse_setting(run.setting)
    if run.setting != COMPLETE:
        train.update(missing_rate=rate, missing_modality=mode)
    method_settings = {**config["encoders"], **config["methods"].get(method, {}), **fixed}
    return {"train": train, "method": method_settings}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def train_arguments(settings: Mapping[str, Mapping[str, Any]]) -> str:
    """Settings -> ``train.lr=0.001 method.d=64 ...`` (shell-quoted ``omnifuse train`` overrides)."""
    items = [
        f"{section}.{key}={_value(value)}"
        for section in ("train", "method")
        for key, value in sorted(settings[section].items())
    ]
    return " ".join(shlex.quote(item) for item in items)


def method_of(wildcards: Mapping[str, str]) -> str:
    return variants()[wildcards["variant"]][0]


def cache_flags(inputs: Mapping[str, str]) -> str:
    return " ".join(f"--cache {m}={shlex.quote(str(p))}" for m, p in inputs.items() if m != "cohort")


def _dataset_paths(ds: Mapping[str, Any]) -> list[str]:
    if ds["kind"] == "manifest":
        return [ds["manifest"]]
    return [p for p in (ds["ehr"]["path"], ds["cxr"]["path"], ds["reports"]["path"]) if p]


def _weights(config: Mapping[str, Any], ds: Mapping[str, Any]) -> list[str]:
    features = config["features"]
    out = []
    if {"cxr", "ct", "pet"} & set(ds["modalities"]):
        w = features["image"]["weights"]
        label = {"none": "RANDOMLY INITIALISED (no pretrained weights)", "imagenet": "ImageNet-pretrained"}
        out.append(f"ResNet34 {label.get(w, f'weights from {w}')}")
    if "rep" in ds["modalities"]:
        model = features["rep"][ds["report_language"]]["model"]
        state = "RANDOMLY INITIALISED" if model.startswith("random-") else "pretrained"
        out.append(f"text encoder {model} ({state})")
    return out


def is_synthetic(config: Mapping[str, Any], name: str) -> bool:
    """Whether every source of dataset ``name`` is synthetic: made by an enabled ``synth_*`` rule, or an
    ``omnifuse synth`` output on disk (its marker file). Decided from the files, not from the config's
    text: the data paths exist (checked at parse time) or are made by the generator."""
    paths = _dataset_paths(config["datasets"][name])
    return bool(paths) and all(synthetic_root(dict(config), p) or marked_synthetic(p) for p in paths)


def artefact_datasets(config: Mapping[str, Any], artefact: str) -> list[str]:
    return sorted({r.dataset for r in artefact_runs(config).get(artefact, [])})


def provenance(config: Mapping[str, Any], artefact: str) -> str:
    """One caption line per dataset an artefact reads: its data source (synthetic demo or real files)
    and the weights of its frozen encoders (pretrained or random). The report job checks the origin
    against the cohorts its runs read (:func:`expected_data`)."""
    lines = []
    for name in artefact_datasets(config, artefact):
        ds = config["datasets"][name]
        source = (
            "SYNTHETIC demo data (omnifuse synth; not patients: the numbers test the pipeline, not the "
            "method)"
            if is_synthetic(config, name)
            else "real data from " + ", ".join(_dataset_paths(ds))
        )
        lines.append(f"{name}: {source}; encoders: {'; '.join(_weights(config, ds)) or 'none (EHR only)'}.")
    return " ".join(lines)


def expected_data(config: Mapping[str, Any], artefact: str) -> str:
    """``--expect-data <dataset>=synthetic|real`` for each dataset of an artefact: the origin its caption
    states, which ``omnifuse report`` checks against the origin recorded in every run it reads."""
    return " ".join(
        f"--expect-data {name}={'synthetic' if is_synthetic(config, name) else 'real'}"
        for name in artefact_datasets(config, artefact)
    )


def report_arguments(config: Mapping[str, Any], artefact: str) -> str:
    """Artefact-specific ``omnifuse report`` options (method order, reference, rows) from the config."""
    e = config["experiments"]
    if artefact == "table3":
        t = e["table3"]
        return f"--methods {' '.join(t['methods'])} --reference {t['reference']} --alpha {t['alpha']}"
    if artefact == "table4":
        return f"--rows {' '.join(e['table4']['rows'])}"
    return ""


def fig8_inputs(config: Mapping[str, Any]) -> dict[str, str]:
    """Cohort and caches of the run Figure 8 embeds (t-SNE of true vs imputed embeddings)."""
    runs = artefact_runs(config).get("fig8")
    if not runs:
        return {}
    run = runs[0]
    ds = config["datasets"][run.dataset]
    inputs = {"cohort": f"results/{run.dataset}/cohorts/{run.task}.parquet"}
    for m in ds["modalities"]:
        inputs[m] = f"results/{run.dataset}/features/{run.task}/{m}.h5"
    return inputs
