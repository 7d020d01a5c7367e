"""labkit in the notebook: widgets, and the kernel side of the JupyterLab extension.

- :func:`summary` — layers, shapes, parameters, FLOPs and measured CPU latency (PyTorch vs a
  quick ONNX Runtime export) while the model is still being designed.
- :func:`progress` — a live training plot: ``with labkit.progress() as p: p.log(loss=...)``.
- :func:`render_result_html` — rich HTML for ``HandoffResult.to_dict()``.
- :func:`_autoregister` — registers the ``labkit.handoff`` comm target when labkit is imported
  inside an IPython kernel; a no-op anywhere else.

Importing this package is cheap: torch, ipywidgets and IPython load only when used.
"""

from __future__ import annotations

from labkit.notebook.progress import progress
from labkit.notebook.protocol import PROTOCOL_VERSION, TARGET
from labkit.notebook.render import render_result_html
from labkit.notebook.summary import summary

__all__ = ["PROTOCOL_VERSION", "TARGET", "progress", "render_result_html", "summary"]


def _in_kernel() -> bool:
    import sys

    if "IPython" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _autoregister() -> bool:
    """Register the comm target if running in a kernel. Never raises; True when registered."""
    try:
        if not _in_kernel():
            return False
        from labkit.notebook.comm import register_target

        return register_target()
    # Importing labkit must never fail because of the notebook integration.
    except Exception:  # noqa: BLE001
        return False
