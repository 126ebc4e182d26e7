# Stage 1: frozen encoders -> one HDF5 cache per modality and cohort (DESIGN.md "Feature cache"):
#   results/{dataset}/features/{task}/{cxr,rep,ct,pet}.h5 and {modality}.report.csv next to it.
# Each job reads the cohort table (results/{dataset}/cohorts/{task}.parquet, made by the cohort
# rules) and the raw files it names. Jobs request `gpu=1` only with features.device: cuda (a cluster
# profile turns that into a GPU request; locally Snakemake limits GPU jobs only with --resources gpu=N).
# With `auto` they use a GPU where their node shows one: a profile's set-resources routes them to GPU
# nodes (README "Running on a cluster").

from omnifuse.features.workflow import (
    feature_gpu,
    feature_options,
    feature_root,
    feature_source,
    feature_targets,
)

FEATURE_GPU = feature_gpu(config)
_FEATURE_COMMON = (
    "omnifuse/features/engine.py",
    "omnifuse/features/options.py",
    "omnifuse/features/extract.py",
    "omnifuse/features/modalities.py",
    "omnifuse/features/runtime.py",
    "omnifuse/features/commands.py",
    "omnifuse/features/cache.py",
    "omnifuse/cohort.py",
    "omnifuse/io.py",
)
_FEATURE_IMAGE = ("omnifuse/features/resnet.py", "omnifuse/features/images.py")
FEATURE_CODE = {
    "cxr": code_hash(*_FEATURE_COMMON, *_FEATURE_IMAGE),
    "rep": code_hash(
        *_FEATURE_COMMON,
        "omnifuse/features/text_model.py",
        "omnifuse/features/report_sections.py",
    ),
    "ct": code_hash(*_FEATURE_COMMON, *_FEATURE_IMAGE, "omnifuse/features/volumes.py"),
}
FEATURE_CODE["pet"] = FEATURE_CODE["ct"]


rule features_cxr:
    input:
        cohort="results/{dataset}/cohorts/{task}.parquet",
        source=lambda w: feature_source(config, w.dataset, "cxr"),
    output:
        cache="results/{dataset}/features/{task}/cxr.h5",
        report="results/{dataset}/features/{task}/cxr.report.csv",
    log:
        "logs/features/{dataset}/{task}/cxr.log",
    benchmark:
        "benchmarks/features/{dataset}/{task}/cxr.tsv"
    wildcard_constraints:
        dataset="[^/]+",
        task="[^/]+",
    threads: config["features"]["threads"]
    resources:
        gpu=FEATURE_GPU,
    params:
        root=lambda w: feature_root(config, w.dataset, "cxr"),
        flags=lambda w: cli_flags(feature_options(config, w.dataset, "cxr")),
        code=FEATURE_CODE["cxr"],
    shell:
        "omnifuse extract cxr --cohort {input.cohort} --root {params.root:q} --out {output.cache}"
        " --report {output.report} --threads {threads} {params.flags} > {log} 2>&1"


rule features_rep:
    input:
        cohort="results/{dataset}/cohorts/{task}.parquet",
        source=lambda w: feature_source(config, w.dataset, "rep"),
    output:
        cache="results/{dataset}/features/{task}/rep.h5",
        report="results/{dataset}/features/{task}/rep.report.csv",
    log:
        "logs/features/{dataset}/{task}/rep.log",
    benchmark:
        "benchmarks/features/{dataset}/{task}/rep.tsv"
    wildcard_constraints:
        dataset="[^/]+",
        task="[^/]+",
    threads: config["features"]["threads"]
    resources:
        gpu=FEATURE_GPU,
    params:
        root=lambda w: feature_root(config, w.dataset, "rep"),
        flags=lambda w: cli_flags(feature_options(config, w.dataset, "rep")),
        code=FEATURE_CODE["rep"],
    shell:
        "omnifuse extract rep --cohort {input.cohort} --root {params.root:q} --out {output.cache}"
        " --report {output.report} --threads {threads} {params.flags} > {log} 2>&1"


rule features_ct:
    input:
        cohort="results/{dataset}/cohorts/{task}.parquet",
        source=lambda w: feature_source(config, w.dataset, "ct"),
    output:
        cache="results/{dataset}/features/{task}/ct.h5",
        report="results/{dataset}/features/{task}/ct.report.csv",
    log:
        "logs/features/{dataset}/{task}/ct.log",
    benchmark:
        "benchmarks/features/{dataset}/{task}/ct.tsv"
    wildcard_constraints:
        dataset="[^/]+",
        task="[^/]+",
    threads: config["features"]["threads"]
    resources:
        gpu=FEATURE_GPU,
    params:
        root=lambda w: feature_root(config, w.dataset, "ct"),
        flags=lambda w: cli_flags(feature_options(config, w.dataset, "ct")),
        code=FEATURE_CODE["ct"],
    shell:
        "omnifuse extract ct --cohort {input.cohort} --root {params.root:q} --out {output.cache}"
        " --report {output.report} --threads {threads} {params.flags} > {log} 2>&1"


rule features_pet:
    input:
        cohort="results/{dataset}/cohorts/{task}.parquet",
        source=lambda w: feature_source(config, w.dataset, "pet"),
    output:
        cache="results/{dataset}/features/{task}/pet.h5",
        report="results/{dataset}/features/{task}/pet.report.csv",
    log:
        "logs/features/{dataset}/{task}/pet.log",
    benchmark:
        "benchmarks/features/{dataset}/{task}/pet.tsv"
    wildcard_constraints:
        dataset="[^/]+",
        task="[^/]+",
    threads: config["features"]["threads"]
    resources:
        gpu=FEATURE_GPU,
    params:
        root=lambda w: feature_root(config, w.dataset, "pet"),
        flags=lambda w: cli_flags(feature_options(config, w.dataset, "pet")),
        code=FEATURE_CODE["pet"],
    shell:
        "omnifuse extract pet --cohort {input.cohort} --root {params.root:q} --out {output.cache}"
        " --report {output.report} --threads {threads} {params.flags} > {log} 2>&1"
