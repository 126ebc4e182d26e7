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
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q -r requirements.txt
"${pip[@]}" install -q --no-deps -r requirements-nodeps.txt
"${pip[@]}" install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import omnifuse, torch, torchvision, snakemake, polars, h5py, transformers"
echo "$want" > "$stamp"
echo "setup: done" >&2
