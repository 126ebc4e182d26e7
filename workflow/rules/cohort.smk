# Stage 0: cohort tables and the EHR time series (docs/design.md, "Stage 0"):
#   results/{dataset}/ehr/events.parquet         clean events of the 17 variables (one scan of the source)
#   results/{dataset}/cohorts/{task}.parquet     ids, labels, patient-level folds, has_<modality>
#   results/{dataset}/features/{task}/ehr.h5     (N, steps, 76) discretized EHR + step mask
# Sources come from datasets.<name>; rules from the `cohort` and `ehr` config sections.

import omnifuse.workflow.cohorts as stage0

EHR = config["ehr"]


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
    priority: STAGE1_PRIORITY
    threads: 2
    params:
        path=lambda w: dataset(config, w.dataset)["ehr"]["path"],
        format=lambda w: dataset(config, w.dataset)["ehr"]["format"],
        flags=cli_flags({k: EHR[k] for k in ("capillary_refill_text", "drop_outliers")}),
        code=CODE["ehr_events"],
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
    priority: STAGE1_PRIORITY
    threads: 2
    params:
        flags=lambda w: cli_flags(stage0.cohort_options(config, w.dataset, w.task)),
        code=CODE["cohort"],
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
    priority: STAGE1_PRIORITY
    threads: 2
    params:
        flags=cli_flags(
            {k: EHR[k] for k in ("timestep", "max_hours", "dtype", "shard_size")}
        ),
        code=CODE["ehr_features"],
    shell:
        "POLARS_MAX_THREADS={threads} omnifuse ehr features --cohort {input.cohort} --threads {threads}"
        " --events {input.events} --out {output.cache} --no-progress {params.flags} > {log} 2>&1"
