"""labkit: hand a PyTorch model from a notebook to deployment as a verified CPU bundle.

The top level stays light: ``import labkit`` pulls in neither torch nor onnxruntime, so that
services importing ``labkit.runtime`` pay only for what they use, and has no side effect: in a
notebook kernel, the first use of a public name connects labkit to the kernel
(:func:`labkit.notebook.activation.activate`).
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
    "handoff": ("labkit.notebook.handoff_view", "handoff"),
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
        _activate_in_ipython()
        return value
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


def _activate_in_ipython() -> None:
    """First use of labkit in IPython connects it (display formatters; in a kernel, the
    Handoff button's comm target): lazily, so ``import labkit`` itself has no side effect."""
    import sys

    if "IPython" not in sys.modules:
        return
    try:
        from labkit.notebook.activation import activate
    except ImportError:
        return
    activate()
