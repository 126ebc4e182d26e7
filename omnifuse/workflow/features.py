"""What the workflow's feature rules (workflow/rules/features.smk) need from the config.

Plain functions of the validated config (no torch import), so that the rule file holds rules only:

* the raw-data root of a dataset's modality: ``datasets.<name>.cxr.path`` (chest X-rays) and
  ``datasets.<name>.reports.path`` (reports) for kind ``mimic``; the manifest's folder for kind
  ``manifest`` (the cohort's ``<modality>_path`` columns are relative to it);
* the rule input that makes the raw files a dependency: the synthetic generator's output folder when
  the root lies inside an enabled one (so the demo data are generated first), else the root;
* the ``omnifuse extract`` options of a dataset and modality (text settings by
  ``datasets.<name>.report_language``);
* the caches of every enabled dataset: its tasks x the modalities stage 1 encodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omnifuse.workflow.common import synthetic_root

FEATURE_MODALITIES = ("cxr", "rep", "ct", "pet")
_COMMON_KEYS = ("device", "precision", "num_workers", "shard_size", "dtype", "max_bad_fraction", "seed")


def feature_root(config: dict[str, Any], dataset: str, modality: str) -> str:
    """The folder that the cohort's ``<modality>_path`` column is relative to."""
    ds = config["datasets"][dataset]
    if ds["kind"] == "manifest":
        key = f"datasets.{dataset}.manifest"
        path = str(Path(ds["manifest"]).parent) if ds["manifest"] else ""
    elif modality == "cxr":
        key, path = f"datasets.{dataset}.cxr.path", ds["cxr"]["path"]
    else:
        key, path = f"datasets.{dataset}.reports.path", ds["reports"]["path"]
    if not path:
        raise ValueError(f"{key} is empty, but {modality} features of dataset {dataset!r} are requested")
    return path


def feature_source(config: dict[str, Any], dataset: str, modality: str) -> str:
    """Rule input for the raw files: an enabled synthetic generator's output holding them, or the root."""
    root = feature_root(config, dataset, modality)
    return synthetic_root(config, root) or str(Path(root))


def feature_options(config: dict[str, Any], dataset: str, modality: str) -> dict[str, Any]:
    """``omnifuse extract <modality>`` options (flag names with ``_``) from the ``features`` section."""
    features = config["features"]
    opts = {key: features[key] for key in _COMMON_KEYS}
    if modality == "rep":
        language = config["datasets"][dataset]["report_language"]
        text = features["rep"][language]
        opts.update(
            text_model=text["model"],
            tokenizer=text["tokenizer"],
            max_tokens=text["max_tokens"],
            max_words=text["max_words"],
            window_overlap=text["window_overlap"],
            section=text["section"],
            fallback=text["fallback"],
            language=language,
            batch_size=features["rep"]["batch_size"],
        )
        return opts
    opts.update(
        weights=features["image"]["weights"],
        batch_size=features["image"]["batch_size"],
        image_size=features[modality]["size"],
    )
    if modality == "cxr":
        opts.update(decode=features["cxr"]["decode"])
    if modality in ("ct", "pet"):
        volume = features[modality]
        opts.update(
            window=volume["window"],
            slice_mode=volume["slice_mode"],
            slice_n=volume["slice_n"],
            max_slices=volume["max_slices"],
            allow_missing_slices=volume["allow_missing_slices"],
            crop=volume["crop"]["mode"],
            crop_half_width_mm=volume["crop"]["half_width_mm"],
            crop_fallback=volume["crop"]["fallback"],
        )
    return opts


def feature_gpu(config: dict[str, Any]) -> int:
    """``resources: gpu`` of an extraction job: 1 only when ``features.device`` is ``cuda``.

    With ``auto`` a job uses a GPU when its node shows one, but asks for none: a cluster or partition
    without a GPU GRES rejects GPU requests at submission. A profile routes extraction to GPU nodes
    with ``set-resources`` (``gpu: 1``, ``slurm_partition: ...``)."""
    return 1 if config["features"]["device"] == "cuda" else 0


def feature_targets(config: dict[str, Any]) -> list[str]:
    """Every cache of every enabled dataset."""
    return [
        f"results/{name}/features/{task}/{modality}.h5"
        for name, ds in config["datasets"].items()
        if ds.get("enabled", True)
        for task in ds["tasks"]
        for modality in FEATURE_MODALITIES
        if modality in ds["modalities"]
    ]
