"""How outputs are compared: the numbers behind parity reports and self-tests.

Relative error is scaled by the output's magnitude (``max|Δ| / max|ref|``), not element-wise,
so near-zero reference values don't turn float noise into huge ratios. The task metric says
whether a difference matters: top-1 agreement for classifiers, cosine similarity otherwise.
Whether the numbers are good enough is decided by ``labkit.bundle.Tolerance.judge`` alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from labkit.bundle.manifest import Manifest
from labkit.bundle.parts import Variant
from labkit.bundle.tolerance import COSINE, TOP1, Tolerance, metric_for_task

__all__ = ["OutputStats", "accumulate", "metric_for_task", "tolerance_for"]


@dataclass
class OutputStats:
    """Errors of one output, accumulated over any number of input batches."""

    name: str
    max_abs: float = 0.0
    ref_scale: float = 0.0
    rows: int = 0
    agree: int = 0
    cos_sum: float = 0.0
    cos_min: float = 1.0
    shapes: tuple[tuple[int, ...], ...] = ()

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        if ref.shape != got.shape:
            raise ValueError(
                f"output {self.name!r}: shape {list(got.shape)} differs from "
                f"the reference's {list(ref.shape)}"
            )
        r = ref.astype(np.float64, copy=False)
        g = got.astype(np.float64, copy=False)
        if r.size:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(r - g))))
            self.ref_scale = max(self.ref_scale, float(np.max(np.abs(r))))
        self.shapes = (*self.shapes, tuple(ref.shape))
        r2 = r.reshape(r.shape[0], -1) if r.ndim >= 1 and r.shape[0] else r.reshape(1, -1)
        g2 = g.reshape(r2.shape)
        self.rows += r2.shape[0]
        if r2.shape[1]:
            self.agree += int(np.sum(np.argmax(r2, axis=1) == np.argmax(g2, axis=1)))
            num = np.sum(r2 * g2, axis=1)
            den = np.linalg.norm(r2, axis=1) * np.linalg.norm(g2, axis=1)
            cos = np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)
            self.cos_sum += float(np.sum(cos))
            self.cos_min = min(self.cos_min, float(np.min(cos)))

    @property
    def max_rel(self) -> float:
        return self.max_abs / max(self.ref_scale, 1e-12)

    def metric(self, name: str) -> float:
        """The task metric called ``name`` (one of ``labkit.bundle.tolerance.METRICS``)."""
        if name not in (TOP1, COSINE):
            raise ValueError(f"unknown metric {name!r}; use {TOP1!r} or {COSINE!r}")
        if not self.rows:
            return 1.0
        if name == TOP1:
            return self.agree / self.rows
        return self.cos_sum / self.rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "ref_scale": self.ref_scale,
            "rows": self.rows,
            # Keyed by metric name, so a tolerance's ``metric`` indexes it directly.
            TOP1: self.metric(TOP1),
            COSINE: self.metric(COSINE),
            "cosine_min": self.cos_min,
            "shapes": [list(s) for s in self.shapes],
        }


def accumulate(
    pairs: Iterable[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]], names: list[str]
) -> dict[str, OutputStats]:
    stats = {n: OutputStats(n) for n in names}
    for ref, got in pairs:
        for n in names:
            stats[n].add(np.asarray(ref[n]), np.asarray(got[n]))
    return stats


def tolerance_for(manifest: Manifest, variant: Variant, exact: bool) -> Tolerance:
    """The tolerance a way of running ``variant`` is judged by on the golden set.

    Exact arithmetic (the graph run as stored) keeps the variant's own tolerance. Reduced
    precision (e.g. an engine computing in bfloat16) is judged like a quantized variant: by
    the accuracy budget the bundle was made with (``provenance.options.budget``, the
    pipeline's ``Budget``), with the variant's task metric. A bundle without a recorded
    budget offers no reduced precision.
    """
    if exact:
        return variant.tolerance
    budget = (manifest.provenance.options or {}).get("budget")
    if not isinstance(budget, Mapping):
        raise ValueError(
            "the bundle records no accuracy budget (provenance.options.budget), "
            "so reduced precision cannot be judged; re-export it with this labkit"
        )
    return Tolerance.from_budget(budget, variant.tolerance.metric or metric_for_task(manifest.task))
