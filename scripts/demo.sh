#!/usr/bin/env bash
# Set up, then hand off the bundled example: an MLP trained on scikit-learn's digits.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
export LABKIT_STORE=${LABKIT_STORE:-$PWD/bundles}
.venv/bin/handoff export examples/digits.py:build --json > .venv/last-handoff.json
bundle=$(.venv/bin/python -c 'import json; print(json.load(open(".venv/last-handoff.json"))["path"])')
echo
.venv/bin/handoff verify "$bundle"
echo
cat "$bundle/report.md"
echo
echo "Bundle: $bundle"
echo "Report: $bundle/report.md"
