# Shared by the rule files: the job shell and the code hashes (helpers: omnifuse/workflow/).
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from omnifuse.workflow.code import CodeError, job_hashes
from omnifuse.workflow.common import cli_flags, dataset

# Jobs run the `omnifuse` command of the environment that runs Snakemake, activated or not.
shell.prefix(
    f"set -euo pipefail; export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
)


# Hash of the package files each kind of job imports (omnifuse/workflow/code.py), keyed like
# "cohort", "features/cxr", "train/gblend": a rule param, so that editing a file reruns exactly the jobs
# whose code imports it.
try:
    CODE = job_hashes()
except CodeError as exc:
    raise WorkflowError(str(exc)) from None


# Generation, cohorts and feature caches go first whenever they are ready (training jobs have priority
# 0): a bad input fails in the first minutes instead of after half of the training, and no two-thread
# stage-1 job waits at the end for both cores while one of them idles.
STAGE1_PRIORITY = 1
