"""Where ``handoff export`` finds models: ``file.py:function`` or a notebook.

A script runs as a script would (its folder first on ``sys.path``; ``__name__`` is not
``"__main__"``, so a training entry point guarded by it does not start) and the named
function returns a ModelSpec. A notebook is executed headless in a Jupyter kernel, and the
models it registered are handed off inside that kernel, where they live, with the same
pipeline; the notebook file itself is not modified.
"""

from __future__ import annotations

import json
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.errors import LabkitError, MissingDependencyError, RegistrationError

_MARK = "LABKIT-HANDOFF "


def parse_script_target(source: str) -> tuple[Path, str]:
    path_text, sep, func = source.rpartition(":")
    if not sep or not path_text.endswith(".py") or not func.isidentifier():
        raise RegistrationError(
            f"SOURCE {source!r} must be 'path/to/file.py:function' (a function returning "
            "labkit.register(...)) or 'notebook.ipynb'")
    path = Path(path_text)
    if not path.is_file():
        raise RegistrationError(f"script {path} does not exist")
    return path, func


def spec_from_script(source: str) -> tuple[Any, Path]:
    from labkit.registry import ModelSpec

    path, func = parse_script_target(source)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        namespace = runpy.run_path(str(path), run_name="__labkit_handoff__")
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    fn = namespace.get(func)
    if not callable(fn):
        found = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("_"))
        raise RegistrationError(f"{path} has no function {func!r}; it defines: "
                                f"{', '.join(found[:12]) or 'no functions'}")
    spec = fn()
    if not isinstance(spec, ModelSpec):
        raise RegistrationError(f"{path}:{func}() returned {type(spec).__name__}; it must "
                                "return the ModelSpec from labkit.register(...)")
    return spec, path


def _handoff_cell(notebook: Path, store: str | None, options: dict[str, Any]) -> str:
    args = json.dumps({"store": store, "source": str(notebook.resolve()), "options": options})
    return f"""
import json as _lk_json
from handoff.kernel_side import handoff_registered as _lk_handoff
_lk_handoff(_lk_json.loads({args!r}), {_MARK!r})
"""


def run_notebook(notebook: Path, *, store: str | None, options: dict[str, Any],
                 on_event: Callable[[dict[str, Any]], None], timeout: int = 1800
                 ) -> list[dict[str, Any]]:
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError:
        raise MissingDependencyError("nbclient", "notebook") from None
    if not notebook.is_file():
        raise RegistrationError(f"notebook {notebook} does not exist")
    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except Exception as exc:  # nbformat raises several types for bad files  # noqa: BLE001
        raise RegistrationError(f"cannot read notebook {notebook}: {exc}") from None
    nb.cells.append(nbformat.v4.new_code_cell(_handoff_cell(notebook, store, options)))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.resolve().parent)}})
    cells = len(nb.cells)
    client.on_cell_execute = lambda cell, cell_index: on_event(  # type: ignore[assignment]
        {"stage": "notebook", "status": "info",
         "message": f"running cell {cell_index + 1}/{cells}"})
    try:
        client.execute()
    except CellExecutionError as exc:
        raise RegistrationError(f"notebook {notebook} failed while running: "
                                f"{_last_line(str(exc))}") from None
    results: list[dict[str, Any]] = []
    for output in nb.cells[-1].get("outputs", []):
        for line in output.get("text", "").splitlines():
            if not line.startswith(_MARK):
                continue
            msg = json.loads(line[len(_MARK):])
            if msg["kind"] == "progress":
                on_event(msg["event"])
            elif msg["kind"] == "result":
                results.append(msg["result"])
            elif msg["kind"] == "error":
                raise _rebuild_error(msg)
    return results


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "unknown error"


def _rebuild_error(msg: dict[str, Any]) -> LabkitError:
    import labkit.errors as errors

    cls = getattr(errors, msg.get("type", ""), None)
    if isinstance(cls, type) and issubclass(cls, LabkitError) and cls not in (
            errors.BundleError, errors.IntegrityError, errors.FormatError,
            errors.MissingDependencyError, errors.ParityError):
        return cls(msg["message"])
    return LabkitError(msg["message"])
