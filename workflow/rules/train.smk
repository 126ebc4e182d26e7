# Stage 2: one job per run = method variant x dataset/task x modality combination x missingness setting,
# training and testing all folds of the cohort (docs/design.md, "Stage 2"):
#   results/{dataset}/runs/{task}/{variant}/{combo}/{setting}/fold{k}/ + summary.json
# The run directory is the output (stale folds of an earlier config never survive a rerun). Which runs
# exist follows from the `experiments` section (omnifuse/workflow/plan.py); their settings from `train`,
# `encoders` and `methods.<method>`, passed as one param per job, so that changing one method's settings
# reruns that method's runs only. Jobs use 1 thread (folds in sequence): --cores N runs N of them at once;
# a profile may raise it with set-threads (folds then train in parallel processes).

import omnifuse.workflow.runs as stage2


rule train:
    input:
        unpack(lambda w: stage2.train_inputs(config, w)),
    output:
        run=directory("results/{dataset}/runs/{task}/{variant}/{combo}/{setting}"),
    log:
        "logs/train/{dataset}/{task}/{variant}/{combo}/{setting}.log",
    benchmark:
        "benchmarks/train/{dataset}/{task}/{variant}/{combo}/{setting}.tsv"
    wildcard_constraints:
        **stage2.RUN_WILDCARDS,
    threads: 1
    resources:
        # the caches are held in memory as stored; batches (normalised per batch), model, torch itself
        # (measured on the demo: 0.9-1.8 GB peak for 35-355 MB of caches)
        mem_mb=lambda w, input: max(4000, 3 * int(input.size_mb) + 2000),
    params:
        method=stage2.method_of,
        overrides=lambda w: stage2.train_arguments(stage2.train_settings(config, w)),
        caches=lambda w, input: stage2.cache_flags(input),
        code=lambda w: CODE[f"train/{stage2.method_of(w)}"],  # only its own method's file
    shell:
        "omnifuse train --cohort {input.cohort} {params.caches} --method {params.method}"
        " --combo {wildcards.combo} --out {output.run} --workers {threads}"
        " {params.overrides} > {log} 2>&1"
