#!/usr/bin/env python3
"""Submit command of the cluster-generic profile for SLURM: ``sbatch`` with the job's own request.

Snakemake calls it with the job script as the last argument. The script's ``# properties = {...}``
line holds the job (rule, wildcards, threads, resources); this turns it into sbatch options and prints
the SLURM job id (``--parsable``), which the status command (slurm-status.py) and the cancel command
(``scancel``) are then given:

    threads                         --cpus-per-task
    resources.mem_mb                --mem (MB)
    resources.runtime               --time (minutes)
    resources.gpu (> 0)             --gpus
    resources.gres                  --gres
    resources.slurm_partition       --partition (else --partition from the command line, if any)
    resources.slurm_account         --account (else --account from the command line, if any)
    resources.slurm_extra           appended as is (e.g. "--qos=short")

SLURM's own output of the job goes to logs/slurm/rule_<rule>/<wildcards>/<job id>.log under the
working directory (the layout of the slurm executor plugin with the slurm profile's ``slurm-logdir``).
Options after the script name and before the job script are passed to sbatch first:

    slurm-submit.py [--partition P] [--account A] [other sbatch options ...] JOBSCRIPT
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

LOGDIR = Path("logs/slurm")


def job_properties(jobscript: Path) -> dict:
    """The job's properties from the ``# properties = {...}`` line of Snakemake's job script."""
    for line in jobscript.read_text().splitlines()[:5]:
        if line.startswith("# properties = "):
            return json.loads(line.removeprefix("# properties = "))
    raise SystemExit(f"slurm-submit: no '# properties = ' line in {jobscript}")


def sbatch_options(props: dict, defaults: list[str]) -> list[str]:
    """sbatch options for one job; ``defaults`` (from the command line) come first, the job's own
    partition or account replaces a default one."""
    resources = props.get("resources", {})
    name = props.get("rule") or f"group_{props.get('groupid', 'job')}"
    wildcards = "_".join(str(v) for v in props.get("wildcards", {}).values()).replace("/", "_")
    logdir = LOGDIR / f"rule_{name}" / wildcards if props.get("type") != "group" else LOGDIR / name
    logdir.mkdir(parents=True, exist_ok=True)  # sbatch does not create it
    options = [opt for opt in defaults if not _replaced(opt, resources)]
    comment = f"rule_{name}_wildcards_{wildcards}" if wildcards else f"rule_{name}"  # as the slurm plugin
    options += ["--parsable", f"--job-name=smk-{name}", f"--comment={comment}", f"--output={logdir}/%j.log"]
    options.append(f"--cpus-per-task={int(props.get('threads', 1))}")
    if resources.get("mem_mb"):
        options.append(f"--mem={int(resources['mem_mb'])}")
    if resources.get("runtime"):
        options.append(f"--time={int(resources['runtime'])}")
    if int(resources.get("gpu", 0) or 0) > 0:
        options.append(f"--gpus={int(resources['gpu'])}")
    if resources.get("gres"):
        options.append(f"--gres={resources['gres']}")
    if resources.get("slurm_partition"):
        options.append(f"--partition={resources['slurm_partition']}")
    if resources.get("slurm_account"):
        options.append(f"--account={resources['slurm_account']}")
    if resources.get("slurm_extra"):
        options += shlex.split(str(resources["slurm_extra"]))
    return options


def _replaced(option: str, resources: dict) -> bool:
    """A command-line default the job's resources override (--partition/-p, --account/-A)."""
    for key, flags in (("slurm_partition", ("--partition", "-p")), ("slurm_account", ("--account", "-A"))):
        if resources.get(key) and option.split("=", 1)[0] in flags:
            return True
    return False


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    *defaults, jobscript = argv
    if any(opt in ("-p", "-A") for opt in defaults):
        print("slurm-submit: write --partition=P / --account=A (with '=')", file=sys.stderr)
        return 2
    options = sbatch_options(job_properties(Path(jobscript)), defaults)
    proc = subprocess.run(["sbatch", *options, jobscript], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"slurm-submit: sbatch {shlex.join(options)} {jobscript} failed:", file=sys.stderr)
        print(proc.stderr.strip(), file=sys.stderr)
        return proc.returncode
    print(proc.stdout.strip().split(";")[0])  # "<id>" or "<id>;<cluster>"
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
