#!/usr/bin/env python3
"""Status command of the cluster-generic profile for SLURM: prints running, success or failed.

Snakemake calls it with one SLURM job id. The state comes from ``squeue`` (which keeps a finished job
for the controller's MinJobAge, 300 s by default) and, for a job squeue no longer knows, from ``sacct``
where accounting is set up. A job neither knows is reported failed (Snakemake then reruns it). When the
controller does not answer, the job is reported running and asked about again at the next check.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

RUNNING = {
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
    "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "PREEMPTED", "RESV_DEL_HOLD",
}  # fmt: skip
FAILED = {
    "BOOT_FAIL", "CANCELLED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT",
    "TIMEOUT",
}  # fmt: skip


def _query(cmd: list[str]) -> tuple[bool, str]:
    """(answered, first state word) of a squeue/sacct call."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False, ""
    if proc.returncode != 0:
        # squeue -j on a job the controller has forgotten: "Invalid job id specified"
        return "Invalid job id" in proc.stderr, ""
    words = proc.stdout.split()
    return True, words[0].rstrip("+") if words else ""  # sacct: "CANCELLED by 0", "RUNNING+"


def status(jobid: str) -> str:
    answered, state = _query(["squeue", "--noheader", "--states=all", "--format=%T", "--jobs", jobid])
    if not answered:
        return "running"  # the controller is busy or down: ask again later
    if not state and shutil.which("sacct"):
        sacct = ["sacct", "--noheader", "--allocations", "--parsable2", "--format=State", "--jobs", jobid]
        answered, state = _query(sacct)
    if state == "COMPLETED":
        return "success"
    if state in RUNNING:
        return "running"
    if state in FAILED:
        return "failed"
    print(
        f"slurm-status: SLURM does not know job {jobid} (state {state or 'none'}): reported failed",
        file=sys.stderr,
    )
    return "failed"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: slurm-status.py JOBID")
    print(status(sys.argv[1]))
