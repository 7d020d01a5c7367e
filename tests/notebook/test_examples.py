"""The example notebooks run headless (nbclient) against a temporary store."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def execute(name: str) -> tuple[dict, float]:
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    start = time.monotonic()
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    return nb, time.monotonic() - start


def text_of(nb: dict) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(parts)


@pytest.mark.slow
def test_quickstart_then_retrain_gives_a_minor_version(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    monkeypatch.setenv("LABKIT_STORE", str(store))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

    nb, seconds = execute("quickstart.ipynb")
    out = text_of(nb)
    assert "labkit-summary" in out and "labkit-result" in out
    assert (store / "digits" / "1.0.0" / "manifest.json").is_file()
    assert (store / "digits" / "1.0.0" / "source" / "quickstart.ipynb").is_file()
    assert seconds < 180, seconds

    nb, _ = execute("retrain.ipynb")
    out = text_of(nb)
    assert "minor 1.1.0" in out
    assert (store / "digits" / "1.1.0" / "manifest.json").is_file()

    from labkit.bundle import verify

    verify(store / "digits" / "1.1.0")
