"""`handoff export notebook.ipynb`: the notebook runs headless, its models are handed off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, str(path))
    return path


def handoff(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_STORE"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "handoff", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
    )


def test_notebook_models_are_handed_off_and_notebook_untouched(tmp_path: Path) -> None:
    nb = _notebook(
        tmp_path / "analysis.ipynb",
        "import torch, labkit\ntorch.manual_seed(0)",
        "model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), "
        "torch.nn.Linear(12, 3))",
        "spec = labkit.register(model, torch.randn(4, 6), name='nb-model', task='classification')",
    )
    before = nb.read_bytes()
    proc = handoff(
        "export", str(nb), "--store", str(tmp_path / "store"), "--json", "--no-benchmark"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["name"], result["version"], result["change"]) == ("nb-model", "1.0.0", "first")
    assert "[1/6] freeze" in proc.stderr and "running cell" in proc.stderr
    bundle = Path(result["path"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["provenance"]["source"]["kind"] == "notebook"
    assert (bundle / "source" / "analysis.ipynb").read_bytes() == before
    assert nb.read_bytes() == before
    assert handoff("verify", str(bundle)).returncode == 0


def test_notebook_that_registers_nothing(tmp_path: Path) -> None:
    nb = _notebook(tmp_path / "empty.ipynb", "x = 1")
    proc = handoff("export", str(nb), "--store", str(tmp_path / "store"))
    assert proc.returncode == 1
    assert "registered no model" in proc.stderr and "labkit.register" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_notebook_with_a_failing_cell(tmp_path: Path) -> None:
    nb = _notebook(tmp_path / "bad.ipynb", "import labkit", "1 / 0")
    proc = handoff("export", str(nb), "--store", str(tmp_path / "store"))
    assert proc.returncode == 1
    assert "failed while running" in proc.stderr and "ZeroDivisionError" in proc.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


@pytest.mark.parametrize("content", [b"not json", b'{"cells": 3}'])
def test_unreadable_notebook(tmp_path: Path, content: bytes) -> None:
    nb = tmp_path / "broken.ipynb"
    nb.write_bytes(content)
    proc = handoff("export", str(nb))
    assert proc.returncode == 1 and "cannot read notebook" in proc.stderr


def test_default_store_is_relative_to_the_shell_not_the_notebook(tmp_path: Path) -> None:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = _notebook(
        folder / "n.ipynb",
        "import torch, labkit",
        "labkit.register(torch.nn.Linear(3, 2), torch.randn(2, 3), name='here')",
    )
    shell = tmp_path / "shell"
    shell.mkdir()
    proc = handoff("export", str(nb), "--no-benchmark", "--no-quantize", "--json", cwd=shell)
    assert proc.returncode == 0, proc.stderr
    assert Path(json.loads(proc.stdout)["path"]) == shell / "bundles" / "here" / "1.0.0"
    assert not (folder / "bundles").exists()


def test_store_reaches_the_notebooks_own_cells_and_nothing_runs_twice(tmp_path: Path) -> None:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = _notebook(
        folder / "own.ipynb",
        "import torch, labkit\ntorch.manual_seed(0)",
        "spec = labkit.register(torch.nn.Linear(5, 3), torch.randn(2, 5), "
        "name='own', task='classification')",
        "from labkit.pipeline import HandoffOptions\n"
        "result = labkit.handoff(spec, options=HandoffOptions(quantize=False, "
        "benchmark=False))\nprint('cell wrote', result.path)",
    )
    store = tmp_path / "elsewhere"
    proc = handoff(
        "export", str(nb), "--store", str(store), "--json", "--no-benchmark", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # the notebook's own cell wrote 1.0.0 into --store; the export reports it, not a
    # second pipeline run ending in "no new version"
    assert (result["version"], result["change"]) == ("1.0.0", "first")
    assert Path(result["path"]) == store / "own" / "1.0.0"
    assert sorted(p.name for p in (store / "own").iterdir()) == ["1.0.0"]
    assert not (folder / "bundles").exists() and not (tmp_path / "bundles").exists()
    assert "already handed off by the notebook's own cell" in proc.stderr
    assert "[1/6] freeze" not in proc.stderr


@pytest.mark.slow
def test_stage_times_are_measured_in_the_kernel(tmp_path: Path) -> None:
    nb = _notebook(
        tmp_path / "t.ipynb",
        "import torch, labkit\ntorch.manual_seed(0)",
        "labkit.register(torch.nn.Sequential(torch.nn.Linear(6, 8), "
        "torch.nn.ReLU(), torch.nn.Linear(8, 2)), torch.randn(2, 6), name='timed')",
    )
    proc = handoff(
        "export", str(nb), "--store", str(tmp_path / "s"), "--no-benchmark", "--no-quantize"
    )
    assert proc.returncode == 0, proc.stderr
    times = {
        line.split()[1]: float(line.split("done in ")[1].split("s")[0])
        for line in proc.stderr.splitlines()
        if "done in" in line
    }
    assert list(times) == ["freeze", "export", "parity", "optimize", "benchmark", "bundle"]
    assert times["export"] > 0.0, proc.stderr  # streamed live and timed where it ran

    again = handoff(
        "export", str(nb), "--store", str(tmp_path / "s"), "--no-benchmark", "--no-quantize"
    )
    assert again.returncode == 0, again.stderr
    assert "nothing changed since 1.0.0" in again.stdout
    for stage in ("optimize", "benchmark", "bundle"):
        assert f"{stage:<9} skipped (identical to 1.0.0)" in again.stderr
