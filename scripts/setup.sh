#!/usr/bin/env bash
# Create .venv/ in the checkout and install labkit into it.
#   scripts/setup.sh demo   the CLI, the exporter and the example's data set (no Node needed)
#   scripts/setup.sh dev    everything: serving, notebook + JupyterLab extension (built with
#                           the machine's Node.js), test tools
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-dev}
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() {
  # This machine's pip config names local wheel folders that may be absent; its
  # "Location … is ignored" warnings are noise, everything else is shown.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "^WARNING: Location '.*' is ignored" || true; }
  return "${PIPESTATUS[0]}"
}
pip --upgrade pip
# This machine's CPU wheel of torch, from local disk, FIRST: labkit[export] takes a torch
# range (>=2.4,<2.14), which this then satisfies, so pip downloads no multi-GB CUDA build.
pip torch==2.13.0
case "$mode" in
  demo) HATCH_BUILD_NO_HOOKS=true pip -e '.[export,examples]' ;;
  dev)  pip -e '.[dev]' ;;
  *) echo "usage: scripts/setup.sh demo|dev" >&2; exit 2 ;;
esac
