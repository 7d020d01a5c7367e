"""``with labkit.progress() as p: p.log(loss=...)``: a live training plot.

In a notebook kernel with ipywidgets, an HTML widget redraws an inline SVG chart (no
matplotlib needed). Elsewhere (a script, a terminal) it prints a compact text line instead.
"""

from __future__ import annotations

import math
import sys
import time
from types import TracebackType
from typing import Any, TextIO

from labkit.notebook._svg import line_chart

__all__ = ["TrainingProgress", "progress"]


def _widget_factory() -> Any | None:
    """ipywidgets.HTML when running inside a kernel that can show widgets, else None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets.HTML


class TrainingProgress:
    """Collects metrics per step and shows them; use through :func:`progress`."""

    def __init__(self, title: str = "training", *, every: float = 0.25,
                 stream: TextIO | None = None, widgets: bool | None = None) -> None:
        self.title = title
        self.history: dict[str, list[float]] = {}
        self.steps = 0
        self._every = every
        self._last = 0.0
        self._stream = stream or sys.stdout
        factory = _widget_factory() if widgets is not False else None
        self._widget = factory(value="") if factory is not None else None

    def __enter__(self) -> TrainingProgress:
        if self._widget is not None:
            from IPython.display import display

            display(self._widget)  # type: ignore[no-untyped-call]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._show(final=True)

    def log(self, **metrics: float) -> None:
        """Record one step; each keyword is a metric (``loss=0.3, acc=0.9``)."""
        for key, value in metrics.items():
            series = self.history.setdefault(key, [math.nan] * self.steps)
            series.append(float(value))
        self.steps += 1
        for series in self.history.values():
            if len(series) < self.steps:
                series.append(math.nan)
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._show()

    def text(self) -> str:
        parts = []
        for key, series in self.history.items():
            finite = [x for x in series if math.isfinite(x)]
            if finite:
                parts.append(f"{key}={finite[-1]:.4g}")
        return f"{self.title} step {self.steps}: " + " ".join(parts)

    def _repr_html_(self) -> str:
        return line_chart(self.history, title=f"{self.title} — step {self.steps}")

    def __repr__(self) -> str:
        return self.text()

    def _show(self, final: bool = False) -> None:
        if self._widget is not None:
            self._widget.value = self._repr_html_()
        elif final or self.steps:
            end = "\n" if final else "\r"
            self._stream.write(self.text() + end)
            self._stream.flush()


def progress(title: str = "training", *, every: float = 0.25,
             widgets: bool | None = None) -> TrainingProgress:
    """A context manager showing live training metrics; see :class:`TrainingProgress`."""
    return TrainingProgress(title, every=every, widgets=widgets)
