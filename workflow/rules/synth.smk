# Synthetic cohorts in the real raw layouts (the demo data; real users skip these rules).


rule synth_mimic:
    output:
        root=directory(config["synthetic"]["mimic"]["out"]),
    log:
        "logs/synth/mimic.log",
    benchmark:
        "benchmarks/synth/mimic.tsv"
    priority: STAGE1_PRIORITY
    threads: 2
    params:
        flags=cli_flags(config["synthetic"]["mimic"]["options"]),
        code=CODE["synth/mimic"],
    shell:
        "omnifuse synth mimic --out {output.root} --overwrite --workers {threads} --no-progress"
        " {params.flags} > {log} 2>&1"


rule synth_lung:
    output:
        root=directory(config["synthetic"]["lung"]["out"]),
    log:
        "logs/synth/lung.log",
    benchmark:
        "benchmarks/synth/lung.tsv"
    priority: STAGE1_PRIORITY
    threads: 2
    params:
        flags=cli_flags(config["synthetic"]["lung"]["options"]),
        code=CODE["synth/lung"],
    shell:
        "omnifuse synth lung --out {output.root} --overwrite --workers {threads}"
        " {params.flags} > {log} 2>&1"
