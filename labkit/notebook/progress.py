"""``with labkit.progress() as p: p.log(loss=...)``: a live training plot with a Stop button.

In a notebook kernel the plot is a plotly ``FigureWidget`` (why plotly: see
:mod:`labkit.notebook.charts`): one panel per kind of metric (losses share a y-axis,
accuracies another, the learning rate its own), validation dashed beside its train twin,
step on x with elapsed time on hover, a linear/log toggle. When the block ends the live
widget is replaced by a static plotly figure saved in the notebook, so the plot survives
reopening and headless runs. Elsewhere (a script, a terminal) it prints a text line.

A non-finite value is never dropped silently: the metric is marked "diverged at step N" in
the title, the text line and :attr:`TrainingProgress.diverged`.

Stopping: the loop checks ``p.should_stop``. The Stop button sets it; so does the kernel's
interrupt (■) while the block runs — the first interrupt asks the loop to stop at its next
check instead of raising mid-step, a second one raises ``KeyboardInterrupt`` as usual.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
import uuid
from html import escape
from types import FrameType, TracebackType
from typing import Any, TextIO

__all__ = ["TrainingProgress", "progress"]


def _in_kernel() -> bool:
    """In a kernel, with the widget libraries the live plot needs."""
    from labkit.notebook.env import in_kernel

    if not in_kernel():
        return False
    try:
        import ipywidgets  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:
        return False
    return True


class TrainingProgress:
    """Collects metrics per step and shows them; use through :func:`progress`."""

    def __init__(
        self,
        title: str = "training",
        *,
        every: float = 0.25,
        stream: TextIO | None = None,
        widgets: bool | None = None,
    ) -> None:
        self.title = title
        self.history: dict[str, list[float]] = {}
        self.elapsed: list[float] = []
        self.diverged: dict[str, int] = {}
        self.steps = 0
        self._every = every
        self._last = 0.0
        self._start = time.monotonic()
        self._stream = stream or sys.stdout
        self._stop = threading.Event()
        self._use_widget = _in_kernel() if widgets is None else widgets and _in_kernel()
        self._fig: Any = None
        self._status: Any = None
        self._display_id = f"labkit-progress-{uuid.uuid4().hex}"
        self._old_sigint: Any = None
        self._drawn_steps = -1
        self._midline = False  # the text line ends in "\r", to be overwritten

    # -- the loop's side -------------------------------------------------------------------
    @property
    def should_stop(self) -> bool:
        """True once Stop was pressed (or the kernel interrupted): end the loop cleanly."""
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def log(self, **metrics: float) -> None:
        """Record one step; each keyword is a metric (``loss=0.3, val_acc=0.9, lr=1e-3``)."""
        step = self.steps + 1
        for key, value in metrics.items():
            v = float(value)
            series = self.history.setdefault(key, [math.nan] * self.steps)
            series.append(v)
            if not math.isfinite(v) and key not in self.diverged:
                self.diverged[key] = step
                lead = "\n" if self._midline else ""
                self._stream.write(f"{lead}⚠ {key} diverged at step {step} ({v})\n")
                self._midline = False
        self.steps = step
        self.elapsed.append(time.monotonic() - self._start)
        for series in self.history.values():
            if len(series) < self.steps:
                series.append(math.nan)
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._show()

    def __enter__(self) -> TrainingProgress:
        self._start = time.monotonic()
        if threading.current_thread() is threading.main_thread():
            self._old_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        if self._use_widget:
            self._open_widget()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._old_sigint is not None:
            signal.signal(signal.SIGINT, self._old_sigint)
            self._old_sigint = None
        self._show(final=True)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self._stop.is_set():  # the second interrupt: the loop did not check, raise
            raise KeyboardInterrupt
        self._stop.set()

    # -- what is shown ---------------------------------------------------------------------
    def text(self) -> str:
        parts = []
        for key, series in self.history.items():
            if key in self.diverged:
                parts.append(f"{key} DIVERGED at step {self.diverged[key]}")
                continue
            finite = [x for x in series if math.isfinite(x)]
            if finite:
                parts.append(f"{key}={finite[-1]:.4g}")
        stopped = " (stopped)" if self.should_stop else ""
        return f"{self.title} step {self.steps}{stopped}: " + " ".join(parts)

    def figure(self, *, widget: bool = False) -> Any:
        from labkit.notebook.charts import training_figure

        return training_figure(
            self.history, self.elapsed, title=self.title, diverged=self.diverged, widget=widget
        )

    def _html(self) -> str:
        rows = []
        for key, series in self.history.items():
            finite = [x for x in series if math.isfinite(x)]
            last = f"{finite[-1]:.4g}" if finite else "—"
            best = (
                (f"{min(finite):.4g}" if "loss" in key.lower() else f"{max(finite):.4g}")
                if finite
                else "—"
            )
            flag = (
                f'<b style="color:#d62728">diverged at step {self.diverged[key]}</b>'
                if key in self.diverged
                else ""
            )
            rows.append(
                f"<tr><td>{escape(key)}</td><td>{last}</td><td>{best}</td><td>{flag}</td></tr>"
            )
        secs = self.elapsed[-1] if self.elapsed else 0.0
        return (
            f'<div class="labkit-progress"><b>{escape(self.title)}</b>: {self.steps} steps, '
            f"{secs:.1f} s{' (stopped)' if self.should_stop else ''}"
            '<table class="labkit-table"><tr><th>metric</th><th>last</th><th>best</th>'
            f"<th></th></tr>{''.join(rows)}</table></div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from labkit.notebook.charts import static_bundle

        return static_bundle(self.figure(), self._html(), self.text())

    def __repr__(self) -> str:
        return self.text()

    def _open_widget(self) -> None:
        import ipywidgets
        from IPython.display import display

        self._fig = self.figure(widget=True)
        stop = ipywidgets.Button(
            description="Stop",
            button_style="danger",
            icon="stop",
            tooltip="end the training loop at its next p.should_stop check",
        )
        stop.add_class("labkit-progress-stop")
        stop.on_click(lambda _b: self._stop.set())
        _peek_clicks(stop, self._stop)
        self._status = ipywidgets.HTML(value="")
        box = ipywidgets.VBox([ipywidgets.HBox([stop, self._status]), self._fig])
        box.add_class("labkit-progress-live")
        display(box, display_id=self._display_id)  # type: ignore[no-untyped-call]

    def _redraw(self) -> None:
        """Update the live figure in place; rebuild it only when a new metric appeared
        (building a subplot figure costs far more than sending new points)."""
        names = [t.name for t in self._fig.data]
        if (
            names != list(self.history)
            or self.diverged
            and "diverged" not in str(self._fig.layout.title.text)
        ):
            new = self.figure()
            with self._fig.batch_update():
                self._fig.data = ()
                self._fig.add_traces(list(new.data))
                self._fig.layout = new.layout
            return
        steps = list(range(1, self.steps + 1))
        with self._fig.batch_update():
            for trace in self._fig.data:
                trace.x, trace.y = steps, _series(self.history[trace.name])
                trace.customdata = self.elapsed
            title = str(self._fig.layout.title.text)
            flag = title[title.find("<br>") :] if "<br>" in title else ""  # the divergence line
            self._fig.layout.title.text = (
                f"{escape(self.title)} — step {self.steps}, {self.elapsed[-1]:.1f} s{flag}"
            )

    def _show(self, final: bool = False) -> None:
        if self._fig is not None:
            if final:
                from IPython.display import update_display

                # The live widget is swapped for the static figure: that is what the
                # notebook saves, and it renders again without a kernel.
                update_display(
                    self._repr_mimebundle_(),
                    raw=True,  # type: ignore[no-untyped-call]
                    display_id=self._display_id,
                )
                return
            if self.steps != self._drawn_steps:
                self._drawn_steps = self.steps
                self._redraw()
                self._status.value = escape(self.text())
        elif final or self.steps:
            end = "\n" if final else "\r"
            self._stream.write(self.text() + end)
            self._stream.flush()
            self._midline = not final


def _series(ys: list[float]) -> list[float | None]:
    return [y if math.isfinite(y) else None for y in ys]


def _peek_clicks(button: Any, flag: threading.Event) -> None:
    """Let a click reach the loop while the cell still runs.

    The kernel handles widget messages only between cells, so ``on_click`` alone would fire
    after the loop ended. ipykernel >= 7 reads shell messages on a separate thread and asks
    each comm where to route its message (``_reply_subshell_for``); peeking there sets the
    flag at once. Elsewhere the kernel interrupt (■) stops the loop (see the module doc).
    """
    comm = getattr(button, "comm", None)
    route = getattr(comm, "_reply_subshell_for", None)
    if comm is None or route is None:
        return

    def peek(data: Any, default: Any) -> Any:
        content = data.get("content") if isinstance(data, dict) else None
        if isinstance(content, dict) and content.get("event") == "click":
            flag.set()
        return route(data, default)

    comm._reply_subshell_for = peek


def progress(
    title: str = "training", *, every: float = 0.25, widgets: bool | None = None
) -> TrainingProgress:
    """A context manager showing live training metrics; see :class:`TrainingProgress`."""
    return TrainingProgress(title, every=every, widgets=widgets)
