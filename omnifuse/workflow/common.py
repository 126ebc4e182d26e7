"""Helpers every rule file uses: the datasets of the config, the synthetic data's rule inputs, CLI flags."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snakemake.exceptions import WorkflowError


def dataset(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    ds = config["datasets"].get(name)
    if ds is None:
        raise WorkflowError(f"no dataset {name!r} in the config (datasets.<name>)")
    return ds


def enabled_datasets(config: Mapping[str, Any]) -> dict[str, Any]:
    return {n: d for n, d in config["datasets"].items() if d.get("enabled", True)}


def synthetic_root(config: Mapping[str, Any], path: str) -> str | None:
    """The enabled synthetic generator's output folder that ``path`` lies in (or is), else None."""
    p = Path(path)
    for spec in config["synthetic"].values():
        out = Path(spec["out"])
        if spec["enabled"] and (p == out or out in p.parents):
            return str(out)
    return None


def source_path(config: Mapping[str, Any], path: str, key: str) -> str:
    """A source as a rule input: the synthetic generator's output folder when ``path`` lies inside it
    (so that the demo data are generated first), else ``path`` itself."""
    if not path:
        raise WorkflowError(f"{key} is empty")
    return synthetic_root(config, path) or str(Path(path))


def cli_flags(options: Mapping[str, Any]) -> str:
    """``{"n_stays": 10, "with_cxr": False}`` -> ``--n-stays 10 --no-with-cxr`` (values shell-quoted)."""
    flags = []
    for key, value in sorted(options.items()):
        name = key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, list | tuple):
            flags.append(" ".join([f"--{name}", *(shlex.quote(str(v)) for v in value)]))
        else:
            flags.append(f"--{name} {shlex.quote(str(value))}")
    return " ".join(flags)
