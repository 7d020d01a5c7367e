"""The layering of docs/internals.md, checked on the source: a module imports only layers below."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB_OK = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "errno",
    "hashlib",
    "io",
    "json",
    "os",
    "re",
    "shutil",
    "stat",
    "tempfile",
    "typing",
    "pathlib",
    "zipfile",
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_errors_use_only_the_standard_library() -> None:
    assert top(imports_of(ROOT / "labkit/errors.py")) <= STDLIB_OK


def test_bundle_layer_imports_stdlib_numpy_and_errors_only() -> None:
    for py in (ROOT / "labkit/bundle").glob("*.py"):
        mods = imports_of(py)
        assert top(mods) <= STDLIB_OK | {"labkit", "numpy"}, py
        labkit_mods = {m for m in mods if m.startswith("labkit")}
        assert all(m.startswith(("labkit.bundle", "labkit.errors")) for m in labkit_mods), py


def test_runtime_imports_no_torch_no_onnx_no_pipeline() -> None:
    for py in (ROOT / "labkit/runtime").glob("*.py"):
        mods = imports_of(py)
        assert not top(mods) & {"torch", "onnx", "onnxscript"}, py
        assert not any(
            m.startswith(("labkit.pipeline", "labkit.registry", "labkit.serve", "labkit.notebook"))
            for m in mods
        ), py


def test_torch_only_in_freeze_export_benchmark() -> None:
    allowed = {"freeze.py", "export.py", "benchmark.py"}
    for py in (ROOT / "labkit/pipeline").glob("*.py"):
        if "torch" in top(imports_of(py)):
            assert py.name in allowed, py


def test_serve_never_imports_pipeline_or_torch() -> None:
    folder = ROOT / "labkit/serve"
    if not folder.is_dir():
        pytest.skip("labkit.serve not present")
    for py in folder.glob("*.py"):
        mods = imports_of(py)
        assert not top(mods) & {"torch", "onnx"}, py
        assert not any(m.startswith("labkit.pipeline") for m in mods), py


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
    import subprocess
    import sys

    code = (
        "import sys, labkit; bad = {'torch', 'onnxruntime', 'onnx'} & set(sys.modules); "
        "print(sorted(bad)); raise SystemExit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_request_vocabulary_is_standard_library_only() -> None:
    """The stage list and request/event types have one home, importable without the pipeline
    (the kernel comm, the CLI's stage printer and the schema generator use it)."""
    import subprocess
    import sys

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


def test_nothing_above_the_engine_seam_imports_onnxruntime_to_classify_errors() -> None:
    """Engines turn their own error types into InputError / EngineError (runtime.engines), so
    serve/ and handoff/ never import onnxruntime, and the pipeline only where it builds graphs
    with ONNX Runtime's optimizer and quantizer (never to open a session or read an error)."""
    build_tools = {"optimize.py"}
    for pkg in ("labkit/serve", "handoff", "labkit/pipeline"):
        for py in (ROOT / pkg).rglob("*.py"):
            mods = imports_of(py)
            if "onnxruntime" in top(mods):
                assert pkg == "labkit/pipeline" and py.name in build_tools, py
            assert not any(m.startswith("onnxruntime.capi") for m in mods), py
    for py in (ROOT / "labkit/pipeline").rglob("*.py"):
        text = py.read_text()
        assert "InferenceSession(" not in text or py.name in build_tools, py
