# Synthetic cohorts in the real raw layouts (the demo data; real users skip these rules).

SYNTH_COMMON = (
    "omnifuse/data/synth/rng.py",
    "omnifuse/data/synth/commands.py",
    "omnifuse/io.py",
)
SYNTH_CODE = {
    "mimic": code_hash(
        *SYNTH_COMMON,
        "omnifuse/data/synth/population.py",
        "omnifuse/data/synth/mimic.py",
        "omnifuse/data/synth/mimic_events.py",
        "omnifuse/data/synth/mimic_tables.py",
        "omnifuse/data/synth/mimic_cxr.py",
        "omnifuse/data/synth/cxr_findings.py",
        "omnifuse/data/synth/cxr_image.py",
        "omnifuse/data/synth/cxr_report.py",
        "omnifuse/data/mimic_items.py",
        "omnifuse/data/mimic_schema.py",
        "omnifuse/data/phenotypes.py",
        "omnifuse/resources/phenotypes_demo.yaml",
        "omnifuse/resources/icd_titles_demo.csv",
    ),
    "lung": code_hash(
        *SYNTH_COMMON,
        "omnifuse/data/synth/lung.py",
        "omnifuse/data/synth/lung_report.py",
    ),
}


rule synth_mimic:
    output:
        root=directory(synthetic_dir("mimic")),
    log:
        "logs/synth/mimic.log",
    benchmark:
        "benchmarks/synth/mimic.tsv"
    threads: 2
    params:
        flags=cli_flags(config["synthetic"]["mimic"]["options"]),
        code=SYNTH_CODE["mimic"],
    shell:
        "omnifuse synth mimic --out {output.root} --overwrite --workers {threads} --no-progress"
        " {params.flags} > {log} 2>&1"


rule synth_lung:
    output:
        root=directory(synthetic_dir("lung")),
    log:
        "logs/synth/lung.log",
    benchmark:
        "benchmarks/synth/lung.tsv"
    threads: 2
    params:
        flags=cli_flags(config["synthetic"]["lung"]["options"]),
        code=SYNTH_CODE["lung"],
    shell:
        "omnifuse synth lung --out {output.root} --overwrite --workers {threads}"
        " {params.flags} > {log} 2>&1"
