# Stage 0: cohort tables and the EHR time series (DESIGN.md "Cohort table", "Feature cache"):
#   results/{dataset}/ehr/events.parquet         clean events of the 17 variables (one scan of the source)
#   results/{dataset}/cohorts/{task}.parquet     ids, labels, patient-level folds, has_<modality>
#   results/{dataset}/features/{task}/ehr.h5     (N, steps, 76) discretized EHR + step mask
# Sources come from datasets.<name>; rules from the `cohort` and `ehr` config sections.

import omnifuse.data.workflow as stage0

EHR = config["ehr"]

_STAGE0_COMMON = ("omnifuse/data/commands.py", "omnifuse/cohort.py", "omnifuse/io.py")
_EHR_EVENTS = (
    "omnifuse/data/mimic",
    "omnifuse/features/ehr/events.py",
    "omnifuse/features/ehr/channels.py",
    "omnifuse/features/ehr/options.py",
    "omnifuse/resources/ehr_channels.yaml",
    "omnifuse/resources/ehr_items.csv",
)
STAGE0_CODE = {
    "events": code_hash(*_STAGE0_COMMON, *_EHR_EVENTS),
    "cohort": code_hash(
        *_STAGE0_COMMON,
        "omnifuse/data/cohorts.py",
        "omnifuse/data/folds.py",
        "omnifuse/data/manifest.py",
        "omnifuse/data/mimic",
        "omnifuse/data/cxr_pairing.py",
        "omnifuse/data/mimic_schema.py",
        "omnifuse/data/phenotypes.py",
        "omnifuse/resources/phenotypes_demo.yaml",
    ),
    "features": code_hash(
        *_STAGE0_COMMON,
        *_EHR_EVENTS,
        "omnifuse/features/ehr/build.py",
        "omnifuse/features/ehr/discretizer.py",
        "omnifuse/features/cache.py",
    ),
}


COHORT_TARGETS = stage0.cohort_targets(config)  # used by all_targets() (common.smk)


rule ehr_events:
    input:
        source=lambda w: stage0.ehr_source(config, w.dataset),
    output:
        events="results/{dataset}/ehr/events.parquet",
        summary="results/{dataset}/ehr/events.json",
    log:
        "logs/ehr/{dataset}/events.log",
    benchmark:
        "benchmarks/ehr/{dataset}/events.tsv"
    wildcard_constraints:
        dataset="[^/]+",
    threads: 2
    params:
        path=lambda w: stage0.dataset(config, w.dataset)["ehr"]["path"],
        format=lambda w: stage0.dataset(config, w.dataset)["ehr"]["format"],
        flags=cli_flags({k: EHR[k] for k in ("capillary_refill_text", "drop_outliers")}),
        code=STAGE0_CODE["events"],
    shell:
        "POLARS_MAX_THREADS={threads} omnifuse ehr extract --source {params.path:q}"
        " --format {params.format} --out {output.events} {params.flags} > {log} 2>&1"


rule cohort:
    input:
        unpack(lambda w: stage0.cohort_inputs(config, w.dataset, w.task)),
    output:
        cohort="results/{dataset}/cohorts/{task}.parquet",
    log:
        "logs/cohort/{dataset}/{task}.log",
    benchmark:
        "benchmarks/cohort/{dataset}/{task}.tsv"
    wildcard_constraints:
        dataset="[^/]+",
        task="ihm|pheno|subtype",
    threads: 2
    params:
        flags=lambda w: cli_flags(stage0.cohort_options(config, w.dataset, w.task)),
        code=STAGE0_CODE["cohort"],
    shell:
        "POLARS_MAX_THREADS={threads} omnifuse cohort {params.flags} --out {output.cohort} > {log} 2>&1"


rule ehr_features:
    input:
        cohort="results/{dataset}/cohorts/{task}.parquet",
        events="results/{dataset}/ehr/events.parquet",
    output:
        cache="results/{dataset}/features/{task}/ehr.h5",
    log:
        "logs/features/{dataset}/{task}/ehr.log",
    benchmark:
        "benchmarks/features/{dataset}/{task}/ehr.tsv"
    wildcard_constraints:
        dataset="[^/]+",
        task="ihm|pheno",
    threads: 2
    params:
        flags=cli_flags(
            {k: EHR[k] for k in ("timestep", "max_hours", "dtype", "shard_size")}
        ),
        code=STAGE0_CODE["features"],
    shell:
        "POLARS_MAX_THREADS={threads} omnifuse ehr features --cohort {input.cohort} --threads {threads}"
        " --events {input.events} --out {output.cache} --no-progress {params.flags} > {log} 2>&1"
