"""What the Snakemake rules (workflow/rules/*.smk) need from the validated config: targets, rule inputs,
command-line flags and code hashes. Plain functions of the config, importable without torch, so that
the rule files hold rules only and ``snakemake -n`` stays fast."""
