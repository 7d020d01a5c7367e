"""The extension's declarations agree with each other and with the Python package."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
EXT = ROOT / "extension"


def test_toolbar_button_and_shortcut_point_to_the_command() -> None:
    schema = json.loads((EXT / "schema" / "plugin.json").read_text())
    (item,) = schema["jupyter.lab.toolbars"]["Notebook"]
    assert item["command"] == "labkit:handoff" and item["label"] == "Handoff"
    assert schema["jupyter.lab.shortcuts"][0]["command"] == "labkit:handoff"
    index = (EXT / "src" / "index.ts").read_text()
    assert "handoff = 'labkit:handoff'" in index
    assert "'Hand off model'" in index


def test_build_output_is_what_the_wheel_installs() -> None:
    package = json.loads((EXT / "package.json").read_text())
    assert package["jupyterlab"]["outputDir"] == "../labkit/labextension"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shared = project["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["labkit/labextension"] == f"share/jupyter/labextensions/{package['name']}"
    hook = project["tool"]["hatch"]["build"]["hooks"]["jupyter-builder"]
    assert hook["build-kwargs"]["path"] == "extension"
    assert re.search(r"^nodeLinker: node-modules$", (EXT / ".yarnrc.yml").read_text(), re.M)


def test_the_kernel_module_is_the_only_one_talking_to_the_kernel() -> None:
    for path in (EXT / "src").glob("*.ts"):
        text = path.read_text()
        if path.name != "kernel.ts":
            assert "createComm" not in text and "requestExecute" not in text, path.name
