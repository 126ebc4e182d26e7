#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv. Idempotent: a stamp file holds a
# hash of the dependency files, so a second run with unchanged pins does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PYTHON=$cand; break; fi
  done
fi
"$PYTHON" - <<'PY' || { echo "setup: Python >= 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

VENV=${OMNIFUSE_VENV:-.venv}
stamp="$VENV/.omnifuse-setup"
want=$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

echo "setup: installing the OmniFuse environment into $VENV (first time: a few minutes, ~6 GB)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# pip byte-compiles what it installs on one core (torch's thousands of modules: ~50 s here); compileall
# does the same on every core. Compiled up front because an environment may forbid writing bytecode at
# import time (PYTHONDONTWRITEBYTECODE), which would make every job compile torch again (~4 s each).
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --no-compile -r requirements.txt
"${pip[@]}" install -q --no-compile --no-deps -r requirements-nodeps.txt
"${pip[@]}" install -q --no-compile --no-deps --no-build-isolation -e .
site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# torch ships a test module in Python 3.12 syntax that 3.11 cannot compile (rc 1); pip skips it too
"$VENV/bin/python" -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true
# this package too (0.13 -> 0.04 s of every job's start); an edited module is recompiled in memory
"$VENV/bin/python" -m compileall -q -j 0 omnifuse >/dev/null
"$VENV/bin/python" -c "import omnifuse, torch, torchvision, snakemake, polars, h5py, transformers"
echo "$want" > "$stamp"
echo "setup: done" >&2
