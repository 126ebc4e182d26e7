"""The experiment plan: which training runs each table and figure needs.

A *run* (:class:`omnifuse.formats.run.Run`) is one method variant, cross-validated on one dataset/task
with one modality combination and one simulated-missingness setting.

Variants are methods with fixed settings: every registered method under its own name, the Table 4
ablation rows of OmniFuse as ``omnifuse-a`` ... ``omnifuse-e`` (row (f), all four parts, is plain
``omnifuse``; row (b), DWFuse alone, is Table 3's DWFuse column; row (a), every part off, is
concatenation trained with OmniFuse's modality dropout, so that each row adds one part to the same
training) and ``omnifuse-noimp`` (OmniFuse without forward/backward imputation, the "without
imputation" curves of Figures 5 and 6). Every OmniFuse variant uses the same modality dropout.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from omnifuse.formats.run import Run, combo_name, setting_name
from omnifuse.methods import ABLATIONS, METHOD_NAMES

TABLE4_ROWS = ("a", "b", "c", "d", "e", "f")
ROW_LABELS = {
    "a": "(a) none (concatenation)",
    "b": "(b) DWFuse",
    "c": "(c) DWFuse + IMP-fw",
    "d": "(d) DWFuse + TLA + IMP-fw",
    "e": "(e) DWFuse + IMP-fw + IMP-bw",
    "f": "(f) DWFuse + TLA + IMP-fw + IMP-bw",
}
METHOD_LABELS = {
    "unimodal": "Unimodal", "concat": "Concat", "sum": "Sum", "se_gate": "SE-Gate", "gblend": "G-Blend",
    "ogm_ge": "OGM-GE", "pmr": "PMR", "medfuse": "MedFuse", "omnifuse-b": "DWFuse", "omnifuse": "OmniFuse",
    "omnifuse-noimp": "OmniFuse w/o imputation",
}  # fmt: skip


def variants() -> dict[str, tuple[str, dict[str, Any]]]:
    """Variant name -> (method, fixed method settings)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {name: (name, {}) for name in METHOD_NAMES}
    for row in "abcde":
        out[f"omnifuse-{row}"] = ("omnifuse", dict(ABLATIONS[row]))
    out["omnifuse-noimp"] = ("omnifuse", {"imp_fw": False, "imp_bw": False})
    return out


def table4_variant(row: str) -> str:
    """Variant of a Table 4 row: (f) is ``omnifuse``, the others ``omnifuse-<row>``."""
    if row not in TABLE4_ROWS:
        raise ValueError(f"Table 4 rows are {TABLE4_ROWS}, got {row!r}")
    return "omnifuse" if row == "f" else f"omnifuse-{row}"


def combos(modalities: Sequence[str], min_size: int = 1) -> list[str]:
    """Combinations of the dataset's modalities (in dataset order), smallest first."""
    out = []
    for r in range(min_size, len(modalities) + 1):
        out.extend(combo_name(c) for c in itertools.combinations(modalities, r))
    return out


TASKS = ("ihm", "pheno", "subtype")


class Skip(Exception):
    """A target on a disabled dataset, or on a task its dataset does not run: not planned."""


def _target(text: str, datasets: Mapping[str, Mapping[str, Any]], key: str) -> tuple[str, str, list[str]]:
    """``"mimic/ihm"`` -> (dataset, task, modalities), checked against the configured datasets; raises
    :class:`Skip` for a disabled dataset."""
    name, _, task = text.partition("/")
    ds = datasets.get(name)
    if ds is None or not task:
        raise ValueError(
            f"experiments.{key}: {text!r} is not '<dataset>/<task>' of a configured dataset "
            f"({sorted(datasets)}); disable the experiment or change its target"
        )
    if not ds.get("enabled", True):
        raise Skip(name)
    if task not in ds["tasks"]:
        if task in TASKS:  # a task the dataset does not run (datasets.<name>.tasks): left out
            raise Skip(text)
        raise ValueError(f"experiments.{key}: dataset {name!r} has no task {task!r} (tasks: {ds['tasks']})")
    return name, task, list(ds["modalities"])


def plan(experiments: Mapping[str, Any], datasets: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Run]]:
    """Runs needed by each artefact (``table2``, ``table3``, ``table4``, ``fig2``, ``fig4`` ... ``fig8``)
    of the enabled experiments over the configured ``datasets`` (name -> dataset config). Targets on a
    disabled dataset, or on a known task the dataset does not run, are left out (an artefact with no
    target left is not planned); unknown datasets or tasks are errors. Without any dataset nothing is
    planned."""
    if not datasets:
        return {}
    out: dict[str, list[Run]] = {}
    e = experiments

    def target(text: str, key: str) -> tuple[str, str, list[str]] | None:
        try:
            return _target(text, datasets, key)
        except Skip:
            return None

    if e["table2"]["enabled"]:
        runs = []
        for text in e["table2"]["targets"]:
            if (t := target(text, "table2.targets")) is None:
                continue
            ds, task, mods = t
            runs += [Run(ds, task, "unimodal", m) for m in mods]
            runs += [Run(ds, task, "concat", c) for c in combos(mods, 2)]
        if runs:
            out["table2"] = runs
    if e["table3"]["enabled"] and (t := target(e["table3"]["target"], "table3.target")):
        ds, task, mods = t
        unknown = [v for v in e["table3"]["methods"] if v not in variants()]
        if unknown:
            raise ValueError(f"experiments.table3.methods: unknown {unknown}; known: {sorted(variants())}")
        out["table3"] = [Run(ds, task, v, c) for c in combos(mods, 2) for v in e["table3"]["methods"]]
        out["fig2"] = [Run(ds, task, "unimodal", m) for m in mods] + [
            Run(ds, task, v, c) for c in combos(mods, 2) for v in ("concat", "omnifuse-b")
        ]
    if e["table4"]["enabled"]:
        runs = []
        for text in e["table4"]["targets"]:
            if (t := target(text, "table4.targets")) is None:
                continue
            ds, task, mods = t
            runs += [
                Run(ds, task, table4_variant(r), c) for c in combos(mods, 2) for r in e["table4"]["rows"]
            ]
        if runs:
            out["table4"] = runs
    m = e["missing"]
    if m["enabled"] and (t := target(m["target"], "missing.target")):
        ds, task, mods = t
        full = combo_name(mods)
        bad = [x for x in m["modes"] if x != "random" and x not in mods]
        if bad:
            raise ValueError(f"experiments.missing.modes: {bad} are not modalities of {m['target']}")
        rates = [0.0, *m["rates"]]
        out["fig4"] = [
            Run(ds, task, "omnifuse", full, setting_name(mode, r)) for mode in m["modes"] for r in rates
        ]
        out["fig5"] = [
            Run(ds, task, v, c, setting_name("random", r))
            for c in combos(mods, 2)
            for v in ("omnifuse", "omnifuse-noimp")
            for r in rates
        ]
    if e["fig6"]["enabled"] and (t := target(e["fig6"]["target"], "fig6.target")):
        ds, task, mods = t
        rates = [0.0, *m["rates"]]
        out["fig6"] = [
            Run(ds, task, v, combo_name(mods), setting_name("random", r))
            for v in ("omnifuse", "omnifuse-noimp")
            for r in rates
        ]
    for fig in ("fig7", "fig8"):
        if e[fig]["enabled"] and (t := target(e[fig]["target"], f"{fig}.target")):
            ds, task, mods = t
            out[fig] = [Run(ds, task, "omnifuse", combo_name(mods))]
    return {k: _unique(v) for k, v in out.items()}


def _unique(runs: Iterable[Run]) -> list[Run]:
    seen: dict[Run, None] = {}
    for run in runs:
        seen.setdefault(run, None)
    return list(seen)


def all_runs(artefacts: Mapping[str, list[Run]]) -> list[Run]:
    return _unique(run for runs in artefacts.values() for run in runs)
