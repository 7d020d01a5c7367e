"""The layering of docs/internals.md, checked on the source: a module imports only layers
below (tests/layering.py is the checker), with no import circles."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from layering import cycles, import_graph, layer_violations  # noqa: E402


def test_every_module_keeps_to_its_layer() -> None:
    """All of labkit/ and handoff/ (rglob: runtime/engines/ too), every import statement."""
    assert layer_violations(ROOT) == []


@pytest.mark.parametrize(
    "planted, rule",
    [
        ("labkit/pipeline/_planted.py", "pipeline imports the notebook layer"),
        ("labkit/runtime/engines/_planted.py", "runtime imports a layer above it"),
        ("handoff/_planted.py", "the CLI imports the notebook layer"),
    ],
)
def test_the_checker_catches_a_planted_notebook_import(
    tmp_path: Path, planted: str, rule: str
) -> None:
    """The rules are real: a copy of the tree with one bad import (inside a function, where
    lazy imports hide) fails the check, and names the file."""
    for pkg in ("labkit", "handoff"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    assert layer_violations(tmp_path) == []
    (tmp_path / planted).write_text("def later():\n    import labkit.notebook\n")
    found = layer_violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{planted}: {rule}"), found


def test_no_import_circles() -> None:
    """charts <-> render and experiments <-> experiment_view were circles; none is left, in
    the notebook layer or anywhere (lazy and TYPE_CHECKING imports count)."""
    assert cycles(import_graph(ROOT, "labkit")) == []
    assert cycles(import_graph(ROOT, "handoff")) == []
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(planted) == [["a", "b", "c"]]


def test_the_result_renders_itself_only_as_text() -> None:
    """HTML and the notebook outputs are registered by the notebook layer as formatters."""
    from labkit.pipeline.result import HandoffResult

    assert not hasattr(HandoffResult, "_repr_html_")
    assert not hasattr(HandoffResult, "_ipython_display_")


def test_import_labkit_registers_nothing_until_first_use() -> None:
    """In IPython, ``import labkit`` registers no display formatter; the first use of a
    public name does (in a kernel it also opens the comm target: test_experiment_kernel)."""
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "html = shell.display_formatter.formatters['text/html']\n"
        "key = ('labkit.pipeline.result', 'HandoffResult')\n"
        "import labkit\n"
        "before = key in html.deferred_printers\n"
        "labkit.register\n"
        "print(before, key in html.deferred_printers)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert proc.stdout.split() == ["False", "True"], proc.stderr


def test_modules_stay_small() -> None:
    for pkg in ("labkit", "handoff"):
        for py in (ROOT / pkg).rglob("*.py"):
            assert len(py.read_text().splitlines()) < 500, f"{py} should be split"


@pytest.mark.parametrize(
    "module",
    [
        "labkit",
        "labkit.runtime",
        "labkit.bundle",
        "labkit.pipeline",
        "labkit.errors",
        "labkit.registry",
    ],
)
def test_public_surface_is_explicit(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__all__, module
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{module}.{name}"


def test_import_labkit_is_light() -> None:

    code = (
        "import sys, labkit; bad = {'torch', 'onnxruntime', 'onnx'} & set(sys.modules); "
        "print(sorted(bad)); raise SystemExit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_request_vocabulary_is_standard_library_only() -> None:
    """The stage list and request/event types have one home, importable without the pipeline
    (the kernel comm, the CLI's stage printer and the schema generator use it)."""

    code = (
        "import sys, labkit.request, handoff.progress, labkit.notebook.protocol; "
        "bad = {'torch', 'onnx', 'onnxruntime', 'numpy', 'labkit.pipeline'} & "
        "set(sys.modules); print(sorted(bad)); raise SystemExit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from labkit.pipeline import STAGES
    from labkit.request import STAGES as home

    assert STAGES is home
