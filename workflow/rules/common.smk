# Helpers shared by the rule files (target lists, CLI flags from config dicts, code hashes).
import hashlib
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

REPO = Path(workflow.basedir).parent

# Jobs run the `omnifuse` command of the environment that runs Snakemake, activated or not.
shell.prefix(
    f"set -euo pipefail; export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
)


def code_hash(*paths):
    """sha256 over the package files a stage uses (folders: their *.py, *.yaml and *.csv files).

    Passed as a rule param, so that editing those files reruns exactly the jobs of that stage.
    """
    digest = hashlib.sha256()
    for rel in paths:
        path = REPO / rel
        if not path.exists():
            raise WorkflowError(
                f"code_hash: {rel} does not exist (update the file list in the rules)"
            )
        files = [path]
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.suffix in {".py", ".yaml", ".csv"}
            )
        for f in files:
            digest.update(str(f.relative_to(REPO)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def cli_flags(options):
    """``{"n_stays": 10, "with_cxr": False}`` -> ``--n-stays 10 --no-with-cxr`` (values shell-quoted)."""
    flags = []
    for key, value in sorted(options.items()):
        name = key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, (list, tuple)):
            flags.append(" ".join([f"--{name}", *(shlex.quote(str(v)) for v in value)]))
        else:
            flags.append(f"--{name} {shlex.quote(str(value))}")
    return " ".join(flags)


def synthetic_dir(name):
    return config["synthetic"][name]["out"]


def all_targets():
    return (
        [
            synthetic_dir(name)
            for name in ("mimic", "lung")
            if config["synthetic"][name]["enabled"]
        ]
        + COHORT_TARGETS  # rules/cohort.smk
        + feature_targets(config)  # omnifuse/features/workflow.py
        + stage2.report_targets(config)  # omnifuse/experiments_workflow.py
    )
