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

echo "setup: installing the OmniFuse environment into $VENV (first time: a minute or more, ~6 GB)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

# The pinned packages (~6 GB unpacked, most of it torch's CUDA libraries) are installed by uv, which
# unpacks and links wheels in parallel: 20 s here against pip's 100 s for the same versions. uv is
# pinned and itself comes from the package index (~2 s). It does not read pip's configuration, so the
# indexes pip is configured with (index-url, extra-index-url, find-links, constraint; config files and
# PIP_* variables) are handed to it, and like pip it takes the best version across all of them
# (unsafe-best-match: a local mirror may hold only some versions of a package). With
# OMNIFUSE_INSTALLER=pip, or when uv cannot be installed or fails, pip does the work alone.
UV_VERSION=0.13.9
uv_index_args() {
  local line key val item
  declare -A seen=()
  while IFS= read -r line; do
    key=${line%%=*}; key=${key##*.}
    val=${line#*=}; val=${val#[\'\"]}; val=${val%[\'\"]}
    val=${val//\\n/ }  # pip prints values with repr(): a multi-line list has literal \n between items
    case "$key" in
      index-url | extra-index-url | find-links | constraint) ;;
      *) continue ;;
    esac
    for item in $val; do
      [ -n "${seen[$key $item]:-}" ] && continue
      seen[$key $item]=1
      if [ "$key" = constraint ]; then
        [ -f "$item" ] && printf '%s\n' --constraint "$item"
      else
        printf '%s\n' "--$key" "$item"
      fi
    done
  done < <("${pip[@]}" config list 2>/dev/null)
}
installer=${OMNIFUSE_INSTALLER:-uv}
if [ "$installer" = uv ] && ! "${pip[@]}" install -q --retries 0 --timeout 15 "uv==$UV_VERSION" >/dev/null 2>&1; then
  echo "setup: uv $UV_VERSION could not be installed; installing with pip (slower)" >&2
  installer=pip
fi
# pip byte-compiles what it installs on one core (torch's thousands of modules: ~50 s here), uv not at
# all; compileall below does it on every core. Compiled up front because an environment may forbid
# writing bytecode at import time (PYTHONDONTWRITEBYTECODE), which would make every job compile torch
# again (~4 s each).
install_pinned() { "$@" -r requirements.txt && "$@" --no-deps -r requirements-nodeps.txt; }
if [ "$installer" = uv ]; then
  mapfile -t index_args < <(uv_index_args)
  uv=("$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --index-strategy unsafe-best-match)
  if ! install_pinned "${uv[@]}" "${index_args[@]}"; then
    echo "setup: uv could not install the packages (above); installing with pip" >&2
    installer=pip
  fi
fi
if [ "$installer" = pip ]; then
  install_pinned "${pip[@]}" install -q --no-compile
fi
"${pip[@]}" install -q --no-compile --no-deps --no-build-isolation -e .
site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# Not compiled: test suites, sympy (torch imports it only for torch.compile) and the ~2,600 modules of
# transformers' model zoo other than the BERT family the report encoders load (35 -> 20 s here).
# torch ships a test module in Python 3.12 syntax that 3.11 cannot compile (rc 1); pip skips it too.
skip='/(tests?|sympy)/|/transformers/models/(?!auto/|bert/)'
"$VENV/bin/python" -m compileall -q -j 0 -x "$skip" "$site" >/dev/null 2>&1 || true
# this package too (0.13 -> 0.04 s of every job's start); an edited module is recompiled in memory
"$VENV/bin/python" -m compileall -q -j 0 omnifuse >/dev/null
"$VENV/bin/python" -c "import omnifuse, torch, torchvision, snakemake, polars, h5py, transformers"
echo "$want" > "$stamp"
echo "setup: done" >&2
