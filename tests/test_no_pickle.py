"""No pickle in a bundle, and none on the load path."""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def test_bundle_holds_no_pickle(bundle: Path) -> None:
    for path in bundle.rglob("*"):
        if not path.is_file():
            continue
        assert path.suffix not in {".pkl", ".pickle", ".pt", ".pth", ".joblib"}, path
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    assert member.endswith(".npy")
                    assert z.read(member)[:2] not in PICKLE_MAGIC
            with np.load(path, allow_pickle=False) as arrays:  # raises on object arrays
                assert all(arrays[k].dtype != object for k in arrays.files)
        else:
            assert path.read_bytes()[:2] not in PICKLE_MAGIC, path


def _imports(folder: Path) -> set[str]:
    names: set[str] = set()
    for py in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_load_path_never_imports_pickle() -> None:
    forbidden = {"pickle", "cloudpickle", "dill", "joblib", "torch", "onnx", "shelve"}
    for pkg in ("labkit/runtime", "labkit/bundle"):
        assert not (_imports(ROOT / pkg) & forbidden), pkg


def test_npz_loads_use_allow_pickle_false() -> None:
    for pkg in ("labkit/runtime", "labkit/bundle", "labkit/serve"):
        for py in (ROOT / pkg).rglob("*.py"):
            text = py.read_text()
            if "np.load(" in text:
                assert text.count("np.load(") == text.count("allow_pickle=False"), py
