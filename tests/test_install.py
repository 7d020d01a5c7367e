"""Installing labkit like a library: torch kept as found, no Node for wheels or sdists.

The pip test installs this checkout with ``[export]`` (and ``[notebook]``, ``[serve]``) into
this environment, which already has a torch in the range; pip's ``--dry-run --report`` must
then install labkit and no torch (nor any CUDA wheel). Packages already installed need no
index, so it runs offline; it skips if pip has to reach an index it cannot.
The build test builds a wheel from a copy of the checkout with no Node.js on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
OFFLINE = re.compile(
    r"NewConnectionError|Max retries|Could not fetch URL|Temporary failure in "
    r"name resolution|Network is unreachable|No matching distribution",
    re.I,
)


def test_export_takes_a_torch_range_that_holds_the_tested_torch() -> None:
    torch_req = next(Requirement(r) for r in EXTRAS["export"] if r.startswith("torch"))
    assert Version("2.4.0") in torch_req.specifier
    assert Version(metadata.version("torch")) in torch_req.specifier
    assert not any(s.operator in ("==", "===") for s in torch_req.specifier)
    for extra in EXTRAS:
        assert not any(
            Requirement(r).name == "torch" and Requirement(r).specifier != torch_req.specifier
            for r in EXTRAS[extra]
        ), extra


@pytest.mark.parametrize("extra", ["export", "notebook", "serve"])
def test_installing_an_extra_keeps_the_installed_torch(extra, tmp_path) -> None:
    """``pip install 'labkit[extra]'`` from this checkout, dry run: labkit, and no torch."""
    pytest.importorskip("hatchling")  # the build backend, used without build isolation
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-build-isolation",
            "--quiet",
            "--report",
            str(report),
            "--disable-pip-version-check",
            f"{ROOT}[{extra}]",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        # pip builds the wheel to read its metadata: without Node on PATH, no extension build
        env={**os.environ, "PATH": str(tmp_path)},
    )
    if proc.returncode != 0 and OFFLINE.search(proc.stdout + proc.stderr):
        pytest.skip(f"the package index is unreachable: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr
    installs = [i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]]
    assert "labkit" in installs
    assert "torch" not in installs
    assert not [n for n in installs if n.startswith("nvidia-")]


def _load_build_function():
    sys.path.insert(0, str(ROOT))
    try:
        from scripts import extension_build
    finally:
        sys.path.pop(0)
    return extension_build


def test_extension_build_without_node_is_a_note(tmp_path, monkeypatch, capsys) -> None:
    build = _load_build_function()
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("LABKIT_REQUIRE_EXTENSION", raising=False)
    build.build("wheel", "standard", ensured_targets=["nowhere/style.js"], path="extension")
    err = capsys.readouterr().err
    assert err == build.NOTE + "\n"
    assert "\n" not in build.NOTE
    monkeypatch.setenv("LABKIT_REQUIRE_EXTENSION", "1")
    with pytest.raises(RuntimeError, match="Node.js not found"):
        build.build("wheel", "standard", path="extension")


def test_wheels_and_sdists_carry_the_built_extension() -> None:
    hook = PYPROJECT["tool"]["hatch"]["build"]["hooks"]["jupyter-builder"]
    assert hook["build-function"] == "scripts.extension_build.build"
    assert hook["skip-if-exists"] == hook["build-kwargs"]["ensured_targets"]
    assert "ensured-targets" not in hook  # checked after a real build, not on a Node-less one
    assert (
        "labkit/labextension"
        in PYPROJECT["tool"]["hatch"]["build"]["targets"]["sdist"]["artifacts"]
    )


def test_a_source_checkout_builds_a_wheel_without_node(tmp_path) -> None:
    pytest.importorskip("hatchling")
    pytest.importorskip("hatch_jupyter_builder")
    src = tmp_path / "src"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file() and not name.startswith("labkit/labextension/"):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {
        "PATH": str(bindir),
        "HOME": str(tmp_path),
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-build-isolation",
            "--no-deps",
            str(src),
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "SYSTEMROOT": os.sep},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "labkit: Node.js not found, so the JupyterLab extension" in proc.stdout + proc.stderr
    wheel = next((tmp_path / "dist").glob("labkit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "labkit/runtime/model.py" in names and "handoff/cli.py" in names
