"""Parse-time checks of the workflow config (the Snakefile runs them before any rule is planned).

* :func:`coerce_config`: values given with ``snakemake --config`` arrive as strings when nested
  (``--config 'synthetic={"mimic": {"options": {"n_stays": 500}}}'`` gives ``"500"``: Snakemake reads
  them with YAML's base loader); they are converted to the type the schema gives the key (integer,
  number, boolean, null), so that such overrides validate like the same values in a YAML file.
* :func:`check_task_training`: the per-task trainer settings of a dataset (``datasets.<name>.train.<task>``)
  use keys of the ``train`` section, and the ``train`` section with them applied still validates against
  ``train.schema.yaml``.
* :func:`check_data_paths`: every data path the enabled datasets read must exist, with the layout its
  reader needs (a MIMIC-IV root has ``hosp/`` or ``core/`` and ``icu/``, ...), else one error lists
  each offending key and path. A path inside an enabled synthetic generator's output is fine before
  it is generated (the ``synth_*`` rule makes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from snakemake.exceptions import WorkflowError

from omnifuse.workflow.common import synthetic_root

TRUE, FALSE = {"true", "yes", "on"}, {"false", "no", "off"}


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _scalar(value: str, types: list[str]) -> Any:
    """``value`` as the first of ``types`` it parses as (strings stay strings where allowed)."""
    text = value.strip()
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            number = float(text)
            return int(number) if text.lstrip("+-").isdigit() else number
        except ValueError:
            pass
    if "boolean" in types and text.lower() in TRUE | FALSE:
        return text.lower() in TRUE
    if "null" in types and text.lower() in ("null", "~", ""):
        return None
    if {"array", "object"} & set(types):
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            return value  # validation names it
        if isinstance(parsed, list | dict):
            return parsed
    return value


def coerce(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """``value`` with every string converted to the type its schema gives it (recursively)."""
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    types = _types(schema)
    if isinstance(value, str) and types and "string" not in types:
        value = _scalar(value, types)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: coerce(v, props[k], root)
            if k in props
            else coerce(v, extra, root)
            if isinstance(extra, dict)
            else v
            for k, v in value.items()
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce(v, schema["items"], root) for v in value]
    return value


def _schema(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.schema.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


def coerce_config(config: dict[str, Any], schemas: str | Path) -> None:
    """Convert the string values of ``config`` in place by the workflow's schemas (each section by its
    own schema, each ``datasets.<name>`` by ``dataset.schema.yaml``)."""
    folder = Path(schemas)
    for section in list(config):
        schema = _schema(folder, section)
        if schema is not None:
            config[section] = coerce(config[section], schema)
    dataset_schema = _schema(folder, "dataset")
    train_schema = _schema(folder, "train")
    if dataset_schema is not None and isinstance(config.get("datasets"), dict):
        for name, entry in config["datasets"].items():
            entry = coerce(entry, dataset_schema)
            if train_schema is not None and isinstance(entry, dict) and isinstance(entry.get("train"), dict):
                entry["train"] = {task: coerce(value, train_schema) for task, value in entry["train"].items()}
            config["datasets"][name] = entry


def check_task_training(config: Mapping[str, Any], schemas: str | Path) -> None:
    """Raise a ``WorkflowError`` naming ``datasets.<name>.train.<task>[.<key>]`` where a per-task trainer
    setting has a key the trainer does not know or a value its schema refuses (checked on the ``train``
    section with the task's settings applied). Settings of a task the dataset does not run are checked
    too, and unused (the dataset schema allows only task names)."""
    import jsonschema

    schema = _schema(Path(schemas), "train") or {}
    known = set(schema.get("properties", {}))
    problems: list[str] = []
    for name, ds in config.get("datasets", {}).items():
        for task, settings in (ds.get("train") or {}).items():
            where = f"datasets.{name}.train.{task}"
            unknown = sorted(set(settings) - known)
            if unknown:
                problems.append(
                    f"{where}: unknown trainer settings {unknown} (the keys of the train section)"
                )
                continue
            merged = {**config.get("train", {}), **settings}
            for error in jsonschema.Draft202012Validator(schema).iter_errors(merged):
                key = ".".join(str(p) for p in error.absolute_path)
                problems.append(f"{where}.{key}: {error.message}")
    if problems:
        raise WorkflowError("config: " + "; ".join(problems))


# ---- data paths


def _layout_problem(kind: str, path: Path) -> str | None:
    """What the reader of ``kind`` would miss at ``path`` (None: fine)."""
    if not path.exists():
        return "does not exist"
    if kind == "mimic-iv":
        if not path.is_dir():
            return "is not a folder (a MIMIC-IV root holds hosp/ or core/, and icu/)"
        if not ((path / "hosp").is_dir() or (path / "core").is_dir()):
            return "is not a MIMIC-IV root: it has neither hosp/ (v2.x) nor core/ (v1.0)"
        if not (path / "icu").is_dir():
            return "is not a MIMIC-IV root: it has no icu/ folder"
    elif kind == "meds":
        if path.is_dir() and next(path.rglob("*.parquet"), None) is None:
            return "holds no parquet files (MEDS data: data/*.parquet or one parquet file)"
    elif kind == "mimic-cxr-jpg":
        if not path.is_dir():
            return "is not a folder (a MIMIC-CXR-JPG root holds files/ and the metadata CSV)"
        meta = "mimic-cxr-2.0.0-metadata.csv"
        if not ((path / meta).is_file() or (path / f"{meta}.gz").is_file()):
            return f"is not a MIMIC-CXR-JPG root: no {meta}[.gz]"
    elif kind == "reports":
        if not (path / "files").is_dir():
            return "is not a MIMIC-CXR reports root: no files/ folder"
    elif kind == "file" and not path.is_file():
        return "is not a file"
    return None


def data_paths(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(config key, path, kind of reader) of every data path the enabled datasets and the config read."""
    out: list[tuple[str, str, str]] = []
    for name, ds in config["datasets"].items():
        if not ds.get("enabled", True):
            continue
        key = f"datasets.{name}"
        if ds["kind"] == "manifest":
            out.append((f"{key}.manifest", ds["manifest"], "file"))
            continue
        out.append((f"{key}.ehr.path", ds["ehr"]["path"], ds["ehr"]["format"]))
        if ds["cxr"]["path"]:
            out.append((f"{key}.cxr.path", ds["cxr"]["path"], "mimic-cxr-jpg"))
        if ds["reports"]["path"]:
            out.append((f"{key}.reports.path", ds["reports"]["path"], "reports"))
    cohort = config.get("cohort", {})
    if cohort.get("phenotypes"):
        out.append(("cohort.phenotypes", cohort["phenotypes"], "file"))
    for name, split in (cohort.get("split_files") or {}).items():
        out.append((f"cohort.split_files.{name}", split, "file"))
    weights = config.get("features", {}).get("image", {}).get("weights", "none")
    if weights not in ("none", "imagenet"):
        out.append(("features.image.weights", weights, "file"))
    return out


def check_data_paths(config: Mapping[str, Any]) -> None:
    """:class:`WorkflowError` listing every configured data path that is missing or has the wrong
    layout (key, path, what is wrong); paths inside an enabled synthetic generator's output pass."""
    problems = []
    for key, path, kind in data_paths(config):
        if not path:
            if key.endswith((".ehr.path", ".manifest")):
                problems.append(f"{key} is empty")
            continue
        if synthetic_root(config, path):
            continue  # made by an enabled synth_* rule
        problem = _layout_problem(kind, Path(path))
        if problem is not None:
            problems.append(f"{key} = {path!r} {problem}")
    if problems:
        raise WorkflowError(
            "config: data path(s) not usable (relative paths are read from "
            f"{Path.cwd()}):\n  " + "\n  ".join(problems)
        )
