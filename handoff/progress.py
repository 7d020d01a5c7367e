"""Stage progress on stderr, the same stages the notebook dialog shows."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

# Mirrors labkit.pipeline.STAGES without importing the pipeline (and torch) just to print;
# tests/test_architecture.py keeps the copies equal.
STAGES = ("freeze", "export", "parity", "optimize", "benchmark", "bundle")


class StagePrinter:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._out = stream or sys.stderr
        self._t0: dict[str, float] = {}

    def __call__(self, event: Any) -> None:
        ev = event if isinstance(event, dict) else event.to_dict()
        stage, status, msg = ev["stage"], ev["status"], ev.get("message") or ""
        n = STAGES.index(stage) + 1 if stage in STAGES else 0
        tag = f"[{n}/{len(STAGES)}] {stage:<9}"
        if status == "start":
            self._t0[stage] = time.perf_counter()
            print(f"{tag} …", file=self._out, flush=True)
        elif status == "done":
            took = time.perf_counter() - self._t0.get(stage, time.perf_counter())
            extra = f" ({msg})" if msg else ""
            print(f"{tag} done in {took:.1f}s{extra}", file=self._out, flush=True)
        elif status == "fail":
            print(f"{tag} FAILED", file=self._out, flush=True)
        elif ev.get("fraction") is None:
            print(f"{' ' * len(tag)}   {msg}", file=self._out, flush=True)
        elif self._out.isatty():  # step counters overwrite each other on a terminal
            print(f"\r{tag} {msg}", end="" if ev["fraction"] < 1 else "\n", file=self._out,
                  flush=True)
