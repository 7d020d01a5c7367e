"""``labkit.handoff`` in a cell: the pipeline, with its stages shown while they run.

In a notebook kernel the progress is one HTML output (a display id) updated at every stage
event: each stage pending, running, done with its time, skipped or failed, and the latest
step ("quantizing: int8-dynamic", "round 3/8"). It is plain HTML, not a widget, so the
notebook saves the final state and shows it again after reopening. Outside a kernel the same
events print as text lines on stderr (:class:`labkit.stage_text.StagePrinter`, the CLI's).

A handoff from the extension's buttons streams the same events over the comm instead
(:mod:`labkit.notebook.handler`); this module is for code in a cell.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from labkit.notebook.env import in_kernel
from labkit.request import STAGES, ProgressEvent

__all__ = ["CellProgress", "handoff", "progress_display"]

_MARK = {
    "pending": ("○", "#7f7f7f"),
    "start": ("…", "#1f77b4"),
    "done": ("✓", "#2ca02c"),
    "skip": ("–", "#7f7f7f"),
    "fail": ("✗", "#d62728"),
}


class CellProgress:
    """A progress callback that draws the stages as one HTML output in the cell."""

    def __init__(self, title: str) -> None:
        from IPython.display import display

        self.title = title
        self.state = {s: "pending" for s in STAGES}
        self.took: dict[str, float] = {}
        self.note: dict[str, str] = {}
        self._t0: dict[str, float] = {}
        self._start = time.perf_counter()
        self.finished = False
        self._id = f"labkit-handoff-{uuid.uuid4().hex}"
        display(self.bundle(), raw=True, display_id=self._id)  # type: ignore[no-untyped-call]

    def __call__(self, event: ProgressEvent) -> None:
        from IPython.display import update_display

        stage = event.stage
        if stage in self.state:
            if event.status in ("start", "done", "fail", "skip"):
                self.state[stage] = event.status
            if event.status == "start":
                self._t0[stage] = time.perf_counter()
            if event.status in ("done", "fail") and stage in self._t0:
                self.took[stage] = (
                    event.elapsed_s
                    if event.elapsed_s is not None
                    else time.perf_counter() - self._t0[stage]
                )
            if event.message:
                self.note[stage] = event.message
        self.finished = all(s in ("done", "skip") for s in self.state.values()) or any(
            s == "fail" for s in self.state.values()
        )
        update_display(self.bundle(), raw=True, display_id=self._id)  # type: ignore[no-untyped-call]

    def text(self) -> str:
        parts = []
        for s in STAGES:
            took = f" {self.took[s]:.1f}s" if s in self.took else ""
            parts.append(f"{_MARK[self.state[s]][0]} {s}{took}")
        return f"{self.title}: " + "  ".join(parts)

    def html(self) -> str:
        rows = []
        for s in STAGES:
            mark, color = _MARK[self.state[s]]
            took = f"{self.took[s]:.1f} s" if s in self.took else ""
            rows.append(
                f'<tr><td style="color:{color};font-weight:bold">{mark}</td><td>{s}</td>'
                f"<td>{took}</td><td>{escape(self.note.get(s, '')[:300])}</td></tr>"
            )
        total = time.perf_counter() - self._start
        state = "finished" if self.finished else "running"
        return (
            f'<div class="labkit-handoff-progress"><b>{escape(self.title)}</b> — {state}, '
            f'{total:.1f} s<table class="labkit-table">{"".join(rows)}</table></div>'
        )

    def bundle(self) -> dict[str, str]:
        return {"text/html": self.html(), "text/plain": self.text()}


def progress_display(title: str) -> Callable[[ProgressEvent], None]:
    """The progress callback for code in a cell: HTML in a kernel, text lines elsewhere."""
    if in_kernel():
        return CellProgress(title)
    from labkit.stage_text import StagePrinter

    return StagePrinter()


def handoff(
    spec: Any,
    *,
    store: str | Path | None = None,
    options: Any = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    source: str | Path | None = None,
    sign_key: str | os.PathLike[str] | None = None,
) -> Any:
    """Hand ``spec`` off: freeze → export → parity → optimize → benchmark → bundle, with
    the stages shown as they run (``progress`` replaces the display). Returns the
    :class:`~labkit.pipeline.HandoffResult`; see :func:`labkit.pipeline.runner.handoff`."""
    from labkit.pipeline.runner import handoff as run_handoff

    shown = progress or progress_display(f"handoff {getattr(spec, 'name', '')}".strip())
    return run_handoff(
        spec, store=store, options=options, progress=shown, source=source, sign_key=sign_key
    )
