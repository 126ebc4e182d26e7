#!/usr/bin/env bash
# Stand-in submit command for the cluster-generic profile: logs the request and runs the job script
# in the background, as a scheduler would. Replace it with your scheduler's submit command, e.g.
#   qsub -V -cwd -pe smp "$1" -l h_vmem="$2"M "$3"
set -euo pipefail
threads=$1 mem_mb=$2 jobscript=$3
echo "submit: threads=$threads mem_mb=$mem_mb $jobscript" >&2
bash "$jobscript" &
