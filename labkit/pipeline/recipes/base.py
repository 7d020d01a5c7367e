"""What a recipe is: one kind of variant, how it is made and what judges it.

A recipe is to a variant what a flavor is to an MLflow model or a quantizer class to ONNX
Runtime's registry of quantizers: it names the kind (``name``), its arithmetic
(``precision``), the engines the graph is meant for (``runs_on``, None = any), says whether
it applies to an exported graph (``applies``), builds the graph (``build``) and names the
tolerance that judges it (``judged_by``: the fp32 parity tolerance, or the accuracy
budget). The optimize stage (:mod:`labkit.pipeline.variants`) does the rest the same way for
every recipe: parity per (engine, precision) through the engine seam, keep or reject.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from labkit.bundle import Tolerance
from labkit.pipeline.freeze import Batch, Reference
from labkit.pipeline.graph import op_counts
from labkit.pipeline.options import HandoffOptions

__all__ = ["Built", "Context", "Graph", "Recipe"]


@dataclass(frozen=True)
class Graph:
    """The exported graph as recipes see it when deciding whether they apply."""

    model: onnx.ModelProto
    ops: dict[str, int]

    @classmethod
    def load(cls, path: Path) -> Graph:
        model = onnx.load(str(path))
        return cls(model, op_counts(model))

    def has(self, *ops: str) -> bool:
        return any(op in self.ops for op in ops)


@dataclass
class Context:
    """What a recipe may use while building: the reference, the exported graph, options."""

    ref: Reference
    exported: Path
    workdir: Path
    options: HandoffOptions
    tolerance: Tolerance  # the fp32 parity tolerance
    budget: Tolerance  # the accuracy budget of reduced precision
    emit: Callable[[str], None] = field(default=lambda _msg: None)

    @property
    def outputs(self) -> list[str]:
        return list(self.ref.spec.output_names)

    @functools.cached_property
    def calibration(self) -> list[Batch]:
        """Calibration batches: the user's ``calibration`` file when given, else the
        parity inputs: the real ones (``parity_inputs``) when there are any, else all."""
        if self.options.calibration is not None:
            from labkit.pipeline.calibration import load_calibration

            return load_calibration(self.options.calibration, self.ref)
        real = [s for s in self.ref.sets if s.kind == "real"]
        return [s.inputs for s in (real or self.ref.sets)]


@dataclass
class Built:
    """A recipe's graph, and what the manifest records about how it was made."""

    path: Path
    optimization: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None  # labkit.bundle.Quantization, less judged_on
    runs_on: tuple[str, ...] | None = None  # overrides the recipe's (e.g. non-standard ops)


class Recipe:
    """Subclass, set the class attributes, implement ``applies`` and ``build``, and
    register an instance (:func:`labkit.pipeline.recipes.register`)."""

    name: str = ""
    precision: str = "fp32"
    #: Engines the graph is meant for; None = any engine (a portable graph).
    runs_on: tuple[str, ...] | None = None
    #: A required recipe failing parity fails the handoff (the portable fp32 graph).
    required: bool = False

    @property
    def quantized(self) -> bool:
        return self.precision != "fp32"

    def applies(self, graph: Graph, options: HandoffOptions) -> bool:
        raise NotImplementedError

    def build(self, ctx: Context, dst: Path) -> Built | None:
        """Write the variant's graph to ``dst``; None when there is nothing to offer (a
        rewrite that matched nothing). Errors reject the recipe with their message."""
        raise NotImplementedError

    def judged_by(self, ctx: Context) -> Tolerance:
        """The tolerance its graph, run as stored, must keep: fp32 graphs the parity
        tolerance, quantized ones the accuracy budget."""
        return ctx.budget if self.quantized else ctx.tolerance

    def rescue(self, ctx: Context, built: Built, dst: Path, budget: Tolerance) -> Built | None:
        """A second try after missing ``budget`` (e.g. sensitive layers kept in fp32), or
        None."""
        return None

    def __repr__(self) -> str:
        return f"<recipe {self.name} ({self.precision}, runs on {self.runs_on or 'any engine'})>"
