# Stage 1: frozen encoders -> one HDF5 cache per modality and cohort (docs/design.md, "Stage 1"):
#   results/{dataset}/features/{task}/{modality}.h5 and {modality}.report.csv next to it, for
#   modality cxr, rep, ct or pet (the EHR cache is built by rules/cohort.smk).
# Each job reads the cohort table and the raw files it names. Jobs request `gpu=1` only with
# features.device: cuda (a cluster profile turns that into a GPU request; locally Snakemake limits GPU
# jobs only with --resources gpu=N). With `auto` they use a GPU where their node shows one: a profile's
# set-resources routes them to GPU nodes (README "Running on a cluster").

from omnifuse.features import INPUT_MODULES
from omnifuse.workflow.features import (
    feature_gpu,
    feature_options,
    feature_root,
    feature_source,
)

FEATURE_GPU = feature_gpu(config)


rule features:
    input:
        cohort="results/{dataset}/cohorts/{task}.parquet",
        source=lambda w: feature_source(config, w.dataset, w.modality),
    output:
        cache="results/{dataset}/features/{task}/{modality}.h5",
        report="results/{dataset}/features/{task}/{modality}.report.csv",
    log:
        "logs/features/{dataset}/{task}/{modality}.log",
    benchmark:
        "benchmarks/features/{dataset}/{task}/{modality}.tsv"
    wildcard_constraints:
        dataset="[^/]+",
        task="[^/]+",
        modality="|".join(INPUT_MODULES),
    priority: STAGE1_PRIORITY
    threads: config["features"]["threads"]
    resources:
        gpu=FEATURE_GPU,
    params:
        root=lambda w: feature_root(config, w.dataset, w.modality),
        flags=lambda w: cli_flags(feature_options(config, w.dataset, w.modality)),
        code=lambda w: CODE[f"features/{w.modality}"],
    shell:
        "omnifuse extract {wildcards.modality} --cohort {input.cohort} --root {params.root:q}"
        " --out {output.cache} --report {output.report} --threads {threads} {params.flags} > {log} 2>&1"
