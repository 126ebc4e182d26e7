# Stage 3: the paper's tables and figures from the run directories (omnifuse/report/):
#   results/table{2,3,4}.csv, results/figures/fig{2,4,5,6,7,8}.{png,pdf}, and behind each one a tidy
#   long-form CSV results/tidy/{name}.csv (one row per run, fold and metric: AUROC and AUPRC).
# Only the `report` section (styling) and the report code feed these jobs besides the runs: changing the
# styling reruns the reports and nothing else. Captions (workflow/report/*.rst) state the data source and
# the encoder weights of the datasets each artefact reads; the report job checks the stated data origin
# (synthetic or real) against the origin recorded in every run it reads (--expect-data).

REPORT_STYLE = cli_flags(config["report"])


rule table:
    input:
        runs=lambda w: stage2.run_dirs(config, w.name),
    output:
        table=report(
            "results/{name}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{name}"},
        ),
        tidy="results/tidy/{name}.csv",
    log:
        "logs/report/{name}.log",
    wildcard_constraints:
        name="table[234]",
    params:
        style=REPORT_STYLE,
        code=CODE["table"],
        args=lambda w: stage2.report_arguments(config, w.name),
        source=lambda w: stage2.provenance(config, w.name),
        expect=lambda w: stage2.expected_data(config, w.name),
    shell:
        "omnifuse report {wildcards.name} $(printf -- '--run %s ' {input.runs:q}) {params.args}"
        " {params.expect} --out {output.table} --tidy {output.tidy} {params.style} > {log} 2>&1"


rule figure:
    input:
        runs=lambda w: stage2.run_dirs(config, w.name),
    output:
        png=report(
            "results/figures/{name}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
        pdf="results/figures/{name}.pdf",
        tidy="results/tidy/{name}.csv",
    log:
        "logs/report/{name}.log",
    wildcard_constraints:
        name="fig[24567]",
    params:
        style=REPORT_STYLE,
        code=CODE["figure"],
        source=lambda w: stage2.provenance(config, w.name),
        expect=lambda w: stage2.expected_data(config, w.name),
    shell:
        "omnifuse report {wildcards.name} $(printf -- '--run %s ' {input.runs:q})"
        " {params.expect} --out {output.png} --tidy {output.tidy} {params.style} > {log} 2>&1"


rule figure_embeddings:
    input:
        unpack(lambda w: stage2.fig8_inputs(config)),
        runs=lambda w: stage2.run_dirs(config, "fig8"),
    output:
        png=report(
            "results/figures/fig8.png",
            caption="../report/fig8.rst",
            category="Figures",
            labels={"figure": "fig8"},
        ),
        pdf="results/figures/fig8.pdf",
        tidy="results/tidy/fig8.csv",
    log:
        "logs/report/fig8.log",
    params:
        style=REPORT_STYLE,
        code=CODE["fig8"],
        caches=lambda w, input: stage2.cache_flags(
            {k: v for k, v in input.items() if k != "runs"}
        ),
        source=stage2.provenance(config, "fig8"),
        expect=stage2.expected_data(config, "fig8"),
    shell:
        "omnifuse report fig8 --run {input.runs} --cohort {input.cohort} {params.caches}"
        " {params.expect} --out {output.png} --tidy {output.tidy} {params.style} > {log} 2>&1"
