"""Stage 2, export: PyTorch → ONNX, dynamo exporter first, TorchScript exporter as fallback.

The model is exported through a thin wrapper that takes the flat input tensors, calls
forward the way the researcher does (positional, keyword, constants such as
``use_cache=False``) and returns the flat named outputs; so the dynamo exporter's
``dynamic_shapes`` are built for the wrapper's one ``*args`` parameter whatever forward's own
signature is (named parameters, ``*args``, keyword-only, defaults).

Axis 0 of every input and output is the dynamic batch axis; ``dynamic_axes`` declared at
registration add more. Which exporter produced the graph, and why the other was not used,
goes into the manifest. Then the graph's signature is checked against what it really does
(:mod:`labkit.pipeline.shapes`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch

from labkit.bundle import Exporter
from labkit.bundle.parts import FALLBACK_PREFIX
from labkit.dynamic_axes import BATCH
from labkit.errors import ExportError
from labkit.pipeline import shapes
from labkit.registry import ModelSpec

_OP = re.compile(r"\b(?:aten|prim|onnx)(?:::|\.)[A-Za-z_][\w.]*")


@dataclass(frozen=True)
class ExportInfo:
    path: Path
    exporter: str  # "dynamo" | "torchscript"
    opset: int
    fallback_reason: str | None
    torch_version: str

    def describe(self) -> str:
        """One line for the stage output; a fallback says so, and why, plainly."""
        return Exporter.from_dict(self.to_dict()).describe()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.exporter,
            "opset": self.opset,
            "fallback_reason": self.fallback_reason,
            "torch": self.torch_version,
        }


def dynamic_axes(spec: ModelSpec) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for name, t in zip(spec.input_names, spec.example_inputs):
        axes[name] = {0: BATCH} if t.dim() else {}
    for name in spec.output_names:
        axes[name] = {0: BATCH}
    for name, extra in spec.dynamic_axes.items():
        axes.setdefault(name, {}).update(extra)
    return {k: v for k, v in axes.items() if v}


class _Flat(torch.nn.Module):
    """forward(*tensors) → the model's outputs as a flat tuple in ``output_names`` order."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.model = spec.model
        self._spec = spec

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._spec.outputs_of(self.model, tensors)


def dynamic_shapes(spec: ModelSpec) -> tuple[tuple[dict[int, Any] | None, ...]]:
    """For the wrapper's one ``*args`` parameter: each input's dynamic axes, unnamed.

    ``Dim.DYNAMIC`` lets the exporter infer relations (two inputs sharing a sequence axis)
    instead of failing on them; the declared names are put on afterwards (``_rename_dims``).
    """
    axes = dynamic_axes(spec)
    dyn = torch.export.Dim.DYNAMIC
    return (tuple({a: dyn for a in axes[n]} if n in axes else None for n in spec.input_names),)


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost cause: exporters wrap the real error in generic "step 1/3" messages."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _summarise(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    root = _root_cause(exc)
    if root is not exc:
        text += f" {type(root).__name__}: {root}"
    first = next((ln.strip() for ln in str(root).splitlines() if ln.strip()), type(root).__name__)
    first = f"{type(root).__name__}: {first}"
    ops = sorted(set(_OP.findall(text)))[:5]
    where = f" (operator {', '.join(ops)})" if ops else ""
    return f"{first[:300]}{where}"


def _export(spec: ModelSpec, out: Path, *, dynamo: bool, opset: int) -> None:
    kwargs: dict[str, Any] = dict(
        input_names=list(spec.input_names),
        output_names=list(spec.output_names),
        opset_version=opset if dynamo else min(opset, 17),
    )
    if dynamo:
        kwargs.update(
            dynamo=True,
            verbose=False,
            report=False,
            optimize=True,
            dynamic_shapes=dynamic_shapes(spec),
        )
    else:
        kwargs.update(dynamo=False, do_constant_folding=True, dynamic_axes=dynamic_axes(spec))
    quiet = io.StringIO()
    # The exporters log warnings (e.g. "torchvision is not installed") on loggers with
    # their own levels, and print the graph they failed on; the user sees the outcome and
    # the reason instead.
    previous = logging.root.manager.disable
    try:
        logging.disable(logging.WARNING)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(quiet),
            contextlib.redirect_stderr(quiet),
            torch.inference_mode(False),
            torch.no_grad(),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(_Flat(spec), tuple(spec.example_inputs), str(out), **kwargs)
    finally:
        logging.disable(previous)


def _rename_dims(model: onnx.ModelProto, spec: ModelSpec) -> None:
    """Give symbolic dims the names users declared, consistently on inputs and outputs."""
    axes = dynamic_axes(spec)
    mapping: dict[str, str] = {}
    for value in [*model.graph.input, *model.graph.output]:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            wanted = axes.get(value.name, {}).get(axis)
            if wanted and dim.dim_param and dim.dim_param != wanted:
                mapping.setdefault(dim.dim_param, wanted)
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in mapping:
                dim.dim_param = mapping[dim.dim_param]


def export(spec: ModelSpec, out: Path, *, opset: int = 18) -> ExportInfo:
    """Export ``spec`` to ``out`` (one self-contained .onnx file)."""
    out = Path(out)
    fallback_reason = None
    exporter = "dynamo"
    try:
        _export(spec, out, dynamo=True, opset=opset)
    except Exception as dyn_exc:  # exporters raise a wide variety of types  # noqa: BLE001
        fallback_reason = f"{FALLBACK_PREFIX}{_summarise(dyn_exc)}"
        exporter = "torchscript"
        try:
            _export(spec, out, dynamo=False, opset=opset)
        except Exception as ts_exc:  # exporters raise a wide variety of types
            raise ExportError(
                f"could not export {spec.name!r} ({type(spec.model).__name__}) to ONNX. "
                f"{fallback_reason}; TorchScript exporter failed: {_summarise(ts_exc)}. "
                "Rewrite the failing operation with standard torch ops, move data-dependent "
                "Python control flow out of forward(), or register a custom ONNX symbolic"
            ) from ts_exc
    try:
        model = onnx.load(str(out))
        _rename_dims(model, spec)
        shapes.declare_outputs(model, spec.dynamic_axes)  # declared, not the implied batch
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx raises ValidationError and others
        raise ExportError(
            f"the {exporter} exporter produced an invalid ONNX graph: {_summarise(exc)}"
        ) from exc
    example = {
        n: t.detach().cpu().contiguous().numpy()
        for n, t in zip(spec.input_names, spec.example_inputs)
    }
    shapes.check(
        model,
        example,
        declare_hint=(
            f"declare the axes in register(..., dynamic_axes=...) as the model really has them "
            f"(now {dict(spec.dynamic_axes) or 'only the batch axis'})"
            + (
                f"; exported by the {exporter} exporter after: {fallback_reason}"
                if fallback_reason
                else ""
            )
        ),
    )
    onnx.save_model(model, str(out))
    opset_used = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    return ExportInfo(out, exporter, int(opset_used), fallback_reason, torch.__version__)
