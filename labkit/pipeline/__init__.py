"""The handoff pipeline: freeze → export → parity → optimize → benchmark → bundle.

Each stage is a function over files and arrays; only :func:`run` composes them. torch is
imported by freeze/export/benchmark only.
"""

from labkit.pipeline.options import (
    STAGES,
    BenchOptions,
    Budget,
    HandoffOptions,
    ProgressEvent,
    Quantize,
)
from labkit.pipeline.result import HandoffResult
from labkit.pipeline.run import run

__all__ = [
    "STAGES",
    "BenchOptions",
    "Budget",
    "HandoffOptions",
    "HandoffResult",
    "ProgressEvent",
    "Quantize",
    "run",
]
