"""Stage progress as text lines, the same stages the notebook dialog shows: ``handoff
export`` on stderr, and ``labkit.handoff`` outside a notebook kernel. Standard library only."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from labkit.request import STAGES, HandoffEvent, ProgressEvent

__all__ = ["StagePrinter"]


class StagePrinter:
    """Prints a handoff's progress events (other events are the caller's business)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._out = stream or sys.stderr
        self._t0: dict[str, float] = {}

    def __call__(self, event: HandoffEvent | ProgressEvent | dict[str, Any]) -> None:
        if isinstance(event, HandoffEvent):
            if event.progress is None:
                return
            event = event.progress
        ev = event if isinstance(event, ProgressEvent) else ProgressEvent.from_dict(event)
        n = STAGES.index(ev.stage) + 1 if ev.stage in STAGES else 0
        tag = f"[{n}/{len(STAGES)}] {ev.stage:<9}"
        if ev.status == "start":
            self._t0[ev.stage] = time.perf_counter()
            print(f"{tag} …", file=self._out, flush=True)
        elif ev.status == "done":
            # The time measured where the stage ran, when the event carries it.
            took = (
                ev.elapsed_s
                if ev.elapsed_s is not None
                else (time.perf_counter() - self._t0.get(ev.stage, time.perf_counter()))
            )
            extra = f" ({ev.message})" if ev.message else ""
            print(f"{tag} done in {took:.1f}s{extra}", file=self._out, flush=True)
        elif ev.status == "skip":
            print(
                f"{tag} skipped ({ev.message})" if ev.message else f"{tag} skipped",
                file=self._out,
                flush=True,
            )
        elif ev.status == "fail":
            print(f"{tag} FAILED", file=self._out, flush=True)
        elif ev.fraction is None:
            print(f"{' ' * len(tag)}   {ev.message}", file=self._out, flush=True)
        elif self._out.isatty():  # step counters overwrite each other on a terminal
            print(
                f"\r{tag} {ev.message}",
                end="" if ev.fraction < 1 else "\n",
                file=self._out,
                flush=True,
            )
