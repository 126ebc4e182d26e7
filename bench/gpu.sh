#!/usr/bin/env bash
# One prepared run on a GPU machine: the project's own setup, then bench/gpu_bench.py's three sections
# (a: chest X-ray extraction at MIMIC-CXR-JPG size, GPU vs CPU decoding; b: report extraction with a
# BERT-base-size model; c: paper-size OmniFuse training), each in its own process with its own share of
# the time budget and a hard timeout, then one table of every number.
#
#   bench/gpu.sh                        # on the GPU machine, from the repository root or anywhere
#   OUT=/some/dir BUDGET_S=480 bench/gpu.sh
#   DEVICE=cpu OMNIFUSE_PYTHON=.venv/bin/python BUDGET_S=240 bench/gpu.sh --quick   # a dry run on a CPU
#
# Environment: OUT (where the files go; default results/bench-gpu), BUDGET_S (seconds for the whole
# script, setup included; default 480), SETUP_TIMEOUT (default 240), OMNIFUSE_PYTHON (use this Python
# and skip the setup), DEVICE (cuda; cpu for a dry run), SECTIONS (default "a b c"). Extra arguments
# go to every section (e.g. --quick, --precisions bf16 fp32).
#
# Writes under $OUT: gpu_bench.log (everything printed), section_{a,b,c}.json (each section's
# numbers, rewritten after every step), gpu_bench.json (all of them), gpu_util.csv (nvidia-smi once a
# second: utilisation, memory, clocks, power) and setup.log. Installs nothing but what
# scripts/setup.sh installs (the project's .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

START=$(date +%s)
BUDGET_S=${BUDGET_S:-480}
SETUP_TIMEOUT=${SETUP_TIMEOUT:-240}
DEVICE=${DEVICE:-cuda}
SECTIONS=${SECTIONS:-a b c}
declare -A WEIGHT=([a]=40 [b]=27 [c]=33) # shares of the budget in % (a: GPU vs CPU decoding, 3 precisions)
OUT_DIR=${OUT:-results/bench-gpu}
RESERVE_S=25 # kept for the summary at the end
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
export PYTHONUNBUFFERED=1
# DataLoader workers hand each decoded image over as a shared-memory file descriptor: 15 workers with
# 2 batches of 32 in flight hold about a thousand
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

elapsed() { echo $(($(date +%s) - START)); }

facts() {
  echo "== machine ($(date -u +%FT%TZ))"
  echo "host $(hostname), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, open files $(ulimit -n)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem,power.limit,temperature.gpu,utilization.gpu \
      --format=csv || true
    nvidia-smi || true
  else
    echo "nvidia-smi: not found"
  fi
}

has_modules() { # python: can it run the bench (and see a GPU, when DEVICE=cuda)?
  "$1" - "$DEVICE" <<'PY' >/dev/null 2>&1
import sys
import h5py, polars, PIL, torch, torchvision, transformers, yaml  # noqa: F401
sys.exit(0 if sys.argv[1] != "cuda" or torch.cuda.is_available() else 1)
PY
}

pick_python() {
  if [ -n "${OMNIFUSE_PYTHON:-}" ]; then
    echo "== setup skipped: OMNIFUSE_PYTHON=$OMNIFUSE_PYTHON" >&2
    PY=$OMNIFUSE_PYTHON
    return
  fi
  local rc=0 venv=${OMNIFUSE_VENV:-.venv}
  if [ -L "$venv" ] && [ ! -e "$venv" ]; then # a link to another machine's environment
    echo "== $venv is a link to $(readlink "$venv"), absent here: setting up .venv-gpu instead" >&2
    venv=.venv-gpu
  fi
  echo "== setup: scripts/setup.sh (make setup) into $venv, at most ${SETUP_TIMEOUT} s; log in $OUT_DIR/setup.log" >&2
  OMNIFUSE_VENV=$venv timeout "$SETUP_TIMEOUT" bash scripts/setup.sh >"$OUT_DIR/setup.log" 2>&1 || rc=$?
  tail -n 5 "$OUT_DIR/setup.log" >&2 || true
  if [ "$rc" -eq 0 ] && has_modules "$venv/bin/python"; then
    PY=$venv/bin/python
  else
    echo "== setup: FAILED, or $venv has no torch that sees $DEVICE (status $rc); trying the machine's python3" >&2
    if has_modules "$(command -v python3 || echo python3)"; then
      PY=python3
      export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
      echo "== using python3 ($(python3 --version 2>&1)) with PYTHONPATH=$PWD: NOT the project's pinned environment" >&2
    else
      echo "== no Python here can run the bench on $DEVICE (see $OUT_DIR/setup.log)" >&2
      exit 2
    fi
  fi
}

run_section() { # section, its weight, the weights of it and the sections after it
  local section=$1 left budget rc=0
  left=$((BUDGET_S - $(elapsed) - RESERVE_S))
  budget=$((left * $2 / $3))
  [ "$budget" -ge 20 ] || budget=20
  echo
  echo "== section $section: budget ${budget} s (elapsed $(elapsed) s of ${BUDGET_S})"
  timeout -k 10 $((budget + 20)) "$PY" -u bench/gpu_bench.py --device "$DEVICE" --sections "$section" \
    --budget-s "$budget" --json "$OUT_DIR/section_$section.json" "${EXTRA[@]}" || rc=$?
  [ "$rc" -eq 0 ] || echo "== section $section ended with status $rc (124: stopped by its timeout)"
}

main() {
  facts
  pick_python
  echo "== python: $PY ($("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'))"
  if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,clocks.sm,power.draw \
      --format=csv -l 1 >"$OUT_DIR/gpu_util.csv" 2>/dev/null &
    SAMPLER=$!
    trap 'kill "$SAMPLER" 2>/dev/null || true' EXIT
  fi
  rm -f "$OUT_DIR"/section_?.json
  local i
  local -a chosen files=()
  read -r -a chosen <<<"$SECTIONS"
  for i in "${chosen[@]}"; do
    [ -n "${WEIGHT[$i]:-}" ] || { echo "SECTIONS: unknown section '$i' (a, b, c)"; exit 2; }
  done
  local j rest
  for ((i = 0; i < ${#chosen[@]}; i++)); do # its weight's share of what is left at its start
    rest=0
    for ((j = i; j < ${#chosen[@]}; j++)); do rest=$((rest + WEIGHT[${chosen[j]}])); done
    run_section "${chosen[i]}" "${WEIGHT[${chosen[i]}]}" "$rest"
    files+=("$OUT_DIR/section_${chosen[i]}.json")
  done
  [ -z "$SAMPLER" ] || kill "$SAMPLER" 2>/dev/null || true
  echo
  echo "== summary (elapsed $(elapsed) s)"
  "$PY" bench/gpu_bench.py --summarize "${files[@]}" --json "$OUT_DIR/gpu_bench.json"
  echo "== done in $(elapsed) s; files in $OUT_DIR"
}

EXTRA=("$@")
SAMPLER=""
PY=""
set -o pipefail
main 2>&1 | tee "$OUT_DIR/gpu_bench.log"
exit "${PIPESTATUS[0]}"
