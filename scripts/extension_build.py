"""Build function for hatch-jupyter-builder: the JupyterLab extension, only where Node is.

A wheel or sdist ships the built extension (``labkit/labextension``), and
``skip-if-exists`` keeps a build from an sdist from running Node again. A *source checkout*
has no built extension: with Node.js the extension is built as before; without it the build
goes on without the extension, with a one-line note, because the runtime, the CLI and the
server never need it. ``LABKIT_REQUIRE_EXTENSION=1`` (release builds) turns the note into an
error. Targets are checked here, after a real build, instead of by the hook's
``ensured-targets``, which would also fail the Node-less build.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NOTE = (
    "labkit: Node.js not found, so the JupyterLab extension (the Handoff button) is not "
    "built; everything else works. Install Node.js 20.19+ and reinstall to include it"
)


def build(
    target_name: str, version: str, ensured_targets: Sequence[str] = (), **kwargs: Any
) -> None:
    if shutil.which("node") is None:
        if os.environ.get("LABKIT_REQUIRE_EXTENSION") == "1":
            raise RuntimeError(NOTE.replace("everything else works. ", ""))
        print(NOTE, file=sys.stderr)
        return
    from hatch_jupyter_builder import npm_builder

    npm_builder(target_name, version, **kwargs)
    missing = [t for t in ensured_targets if not Path(t).exists()]
    if missing and version == "standard":
        raise RuntimeError(f"the extension build did not produce {missing}")
