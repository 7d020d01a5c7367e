"""Where this code runs: inside IPython, inside a Jupyter kernel, or neither.

Checked through ``sys.modules`` first, so asking never imports IPython into a script.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["in_kernel", "ipython"]


def ipython() -> Any | None:
    """The running IPython shell (terminal or kernel), or None."""
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()  # type: ignore[no-untyped-call]


def in_kernel() -> bool:
    """True inside a Jupyter kernel (a notebook, or ``handoff export`` running one)."""
    shell = ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
