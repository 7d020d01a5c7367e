"""labkit: hand a PyTorch model from a notebook to deployment as a verified CPU bundle.

The top level stays light: ``import labkit`` pulls in neither torch nor onnxruntime, so that
services importing ``labkit.runtime`` pay only for what they use.
"""

from __future__ import annotations

from typing import Any

from labkit.errors import LabkitError

__version__ = "0.1.0"

__all__ = [
    "LabkitError",
    "ModelSpec",
    "__version__",
    "experiment",
    "handoff",
    "progress",
    "register",
    "registered",
    "summary",
]

_LAZY = {
    "register": ("labkit.registry", "register"),
    "registered": ("labkit.registry", "registered"),
    "ModelSpec": ("labkit.registry", "ModelSpec"),
    "handoff": ("labkit.pipeline.runner", "handoff"),
    "summary": ("labkit.notebook.summary", "summary"),
    "progress": ("labkit.notebook.progress", "progress"),
    "experiment": ("labkit.notebook.experiments", "experiment"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


def _autoregister_comm() -> None:
    """Inside a Jupyter kernel, open the Handoff button's comm target (no-op elsewhere)."""
    import sys

    if "ipykernel" not in sys.modules:
        return
    try:
        from labkit.notebook import _autoregister
    except ImportError:
        return
    _autoregister()


_autoregister_comm()
