"""Every example notebook runs headless (nbclient), twice in a row, against a temporary store
and a temporary copy of examples/ (what a notebook writes stays out of the repository)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ORDER = ["quickstart.ipynb", "retrain.ipynb", "experiments.ipynb"]  # retrain needs quickstart
PLOTLY = "application/vnd.plotly.v1+json"
EXPERIMENT_MIME = "application/vnd.labkit.experiment+json"


def execute(folder: Path, name: str) -> tuple[dict, float]:
    nb = nbformat.read(folder / name, as_version=4)
    start = time.monotonic()
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return nb, time.monotonic() - start


def text_of(nb: dict) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(parts)


def test_every_example_is_listed() -> None:
    assert sorted(ORDER) == sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


@pytest.mark.slow
def test_examples_run_twice_in_a_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    folder = tmp_path / "examples"
    shutil.copytree(EXAMPLES, folder)
    monkeypatch.setenv("LABKIT_STORE", str(store))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

    for round_ in (1, 2):
        nb, seconds = execute(folder, "quickstart.ipynb")
        out = text_of(nb)
        assert "labkit-summary" in out and "labkit-result" in out
        # labkit.handoff in a cell showed its stages, and the saved output is the final state
        assert "labkit-handoff-progress" in out and "— finished" in out
        assert "digits MLP — finished at step" in out  # the training plot says how it ended
        # the training plot is saved as a static figure, so it shows again after reopening
        saved = [o for c in nb.cells for o in c.get("outputs", []) if PLOTLY in o.get("data", {})]
        assert saved and {t["name"] for t in saved[0]["data"][PLOTLY]["data"]} == {
            "loss",
            "test_acc",
        }
        assert (store / "digits" / "1.0.0" / "manifest.json").is_file()
        assert (store / "digits" / "1.0.0" / "source" / "quickstart.ipynb").is_file()
        assert seconds < 180, seconds

        nb, _ = execute(folder, "retrain.ipynb")
        out = text_of(nb)
        # a re-run retrains: a new minor version, or none if the weights came out identical
        assert "minor 1.1.0" in out if round_ == 1 else re.search(r"(minor|none) 1\.\d+\.0", out)
        assert (store / "digits" / "1.1.0" / "manifest.json").is_file()

        nb, _ = execute(folder, "experiments.ipynb")
        out = text_of(nb)
        assert "6 of 6 trials, done" in out and "labkit-result" in out
        assert "ranked by <b>val_acc, higher is better</b>" in out
        kept = [o for c in nb.cells for o in c.get("outputs", [])]
        assert not [
            o for o in kept if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        ]
        assert any(EXPERIMENT_MIME in o.get("data", {}) for o in kept)
        assert "from experiment digits-width" in out  # the bundle's provenance names the trial
        runs = sorted((folder / "experiments" / "digits-width").iterdir())
        assert len(runs) == round_ and len(list(runs[-1].glob("trial-*.json"))) == 6
        assert len(list(runs[-1].glob("trial-*.safetensors"))) == 6
        assert (store / "digits-sweep" / "1.0.0" / "manifest.json").is_file()
        assert not (store / "digits-sweep" / "2.0.0").exists()  # same trial: never major

    from labkit.bundle import verify

    verify(store / "digits" / "1.1.0")
    verify(store / "digits-sweep" / "1.0.0")
