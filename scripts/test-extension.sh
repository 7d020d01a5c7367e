#!/usr/bin/env bash
# Tests of the JupyterLab extension: jest (TypeScript helpers and the kernel seam), then the
# Galata browser tests in Debian's headless Chromium against a real JupyterLab, kernel and
# pipeline. Run from the repository root after `pip install -e '.[dev]'` into .venv.
# The last line is `N passed, M failed` for the browser tests; the exit code is non-zero if
# anything failed. Arguments go to Playwright: `-g "Bundles panel"` runs the matching tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
export PATH="$VENV/bin:$PATH"
ARTIFACTS=$ROOT/test-artifacts/ui
RESULTS=$ROOT/extension/ui-tests/test-results/results.json
mkdir -p "$ARTIFACTS"

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing Debian's chromium (the tests never download a browser)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

echo "== building the extension"
(cd extension && jlpm install >/dev/null && jlpm build:prod >/dev/null)

# One temporary folder for the store, the server's root, the extension under test and
# everything the server, kernels and browser put in TMPDIR; removed on exit.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/labkit-ui.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/store" "$WORK/root" "$WORK/tmp"

# The server loads the extension just built from a private data folder first on JUPYTER_PATH
# (the first copy found wins), so the environment's installed copy is neither used nor
# changed; kernels import this checkout's labkit.
EXT="$WORK/data/labextensions/labkit-handoff"
mkdir -p "$EXT"
cp -R labkit/labextension/. "$EXT/"
cp extension/install.json "$EXT/install.json"
export JUPYTER_PATH="$WORK/data${JUPYTER_PATH:+:$JUPYTER_PATH}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if ! jupyter labextension list 2>&1 | grep -q "$WORK/data/labextensions"; then
  echo "JupyterLab does not see the extension under test in $WORK/data" >&2
  exit 1
fi
if ! jupyter labextension list 2>&1 | grep -q 'labkit-handoff.*enabled'; then
  echo "labkit-handoff is not enabled in JupyterLab: run pip install -e '.[dev]'" >&2
  exit 1
fi

echo "== jest"
jest_rc=0
(cd extension && jlpm jest --ci) || jest_rc=$?

echo "== galata (Chromium: /usr/bin/chromium)"
(cd extension/ui-tests && jlpm install >/dev/null)
export TMPDIR=$WORK/tmp
export LABKIT_STORE=$WORK/store
export JUPYTERLAB_GALATA_ROOT_DIR=$WORK/root
export LABKIT_UI_PORT=${LABKIT_UI_PORT:-$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export LABKIT_PYTHON=$VENV/bin/python
rm -f "$RESULTS"
ui_rc=0
start=$(date +%s)
(cd extension/ui-tests && timeout 1200 jlpm playwright test "$@") || ui_rc=$?
echo "galata took $(( $(date +%s) - start ))s; screenshots in test-artifacts/ui/"

counts=$(node -e '
  const fs = require("fs");
  const f = process.argv[1];
  if (!fs.existsSync(f)) { console.log("0 1"); process.exit(0); }
  const s = JSON.parse(fs.readFileSync(f, "utf-8")).stats || {};
  console.log(`${s.expected || 0} ${(s.unexpected || 0) + (s.flaky || 0)}`);
' "$RESULTS")
passed=${counts% *}
failed=${counts#* }
if [ "$ui_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1  # the runner itself failed (e.g. the server did not start)
fi
if [ "$jest_rc" -ne 0 ]; then
  echo "jest failed (exit $jest_rc)"
fi
echo "$passed passed, $failed failed"
if [ "$jest_rc" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
  exit 1
fi
