#!/usr/bin/env bash
# Set up everything, then run the whole test suite: Python (pytest), then the JupyterLab
# extension's jest and browser (Galata, Debian's Chromium) tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
# The server tests also speak to it with plain curl.
if ! command -v curl >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi
status=0
echo "== lint and format (ruff) and types (mypy)"
.venv/bin/ruff check . || status=$?
.venv/bin/ruff format --check . || status=$?
.venv/bin/mypy || status=$?
echo "== pytest (one worker per core: pytest-xdist)"
.venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-auto}" "$@" || status=$?
if [ -x scripts/test-extension.sh ]; then
  scripts/test-extension.sh || status=$?
fi
exit $status
