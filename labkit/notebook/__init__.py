"""labkit in the notebook: widgets, and the kernel side of the JupyterLab extension.

- :func:`summary` — layers, shapes, parameters, FLOPs and measured CPU latency (PyTorch vs a
  quick ONNX export) while the model is still being designed.
- :func:`progress` — a live training plot: ``with labkit.progress() as p: p.log(loss=...)``.
- :func:`handoff` — ``labkit.handoff`` with the stages shown in the cell while they run.
- :func:`render_result_html` — rich HTML for ``HandoffResult.to_dict()``.
- :func:`activate` — in IPython, registers the display formatters of labkit's results and,
  in a kernel, the ``labkit.handoff`` comm target. Called on first use of labkit in a kernel
  (and by the extension before it opens the comm), never as a side effect of an import.

Importing this package is cheap: torch, ipywidgets, IPython and plotly load only when used;
the names below that pull in more (the bundle format, charts) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Eager: these functions share their module's name, and a lazy attribute would be replaced
# by the submodule as soon as anything imported it.
from labkit.notebook.progress import progress
from labkit.notebook.protocol import PROTOCOL_VERSION, TARGET
from labkit.notebook.summary import summary

if TYPE_CHECKING:
    from labkit.notebook.activation import activate
    from labkit.notebook.handoff_view import handoff
    from labkit.notebook.render import render_result_html

__all__ = [
    "PROTOCOL_VERSION",
    "TARGET",
    "activate",
    "handoff",
    "progress",
    "render_result_html",
    "summary",
]

_HOME = {
    "activate": "labkit.notebook.activation",
    "handoff": "labkit.notebook.handoff_view",
    "render_result_html": "labkit.notebook.render",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'labkit.notebook' has no attribute {name!r}")


def _autoregister() -> bool:
    """What the JupyterLab extension calls (silently) before it opens the comm: activate,
    True when the comm target is registered. Never raises."""
    from labkit.notebook.activation import activate

    return activate()
