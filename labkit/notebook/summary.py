"""``labkit.summary(model, example_inputs)``: analyzeNetwork for a model being designed.

Nested modules (``depth`` controls how deep the table goes), input and output shapes,
parameters (trainable and frozen), mult-adds (:mod:`labkit.notebook.macs`), activation
memory, pre-handoff warnings (:mod:`labkit.notebook.prechecks`), and what nothing in MATLAB
or torchinfo shows: the measured CPU latency on this machine for PyTorch eager and a quick
ONNX Runtime export, and the CPU time per layer from ONNX Runtime's profiler
(:mod:`labkit.notebook.quick_onnx`).

``example_inputs``: a tensor, a tuple of tensors, or a dict of keyword inputs (Hugging Face
style); ``kwargs`` adds keyword inputs to positional ones.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from html import escape
from typing import Any

from labkit.errors import InputError, MissingDependencyError
from labkit.model_state import preserved
from labkit.notebook.layer_trace import LayerRow, trace_layers
from labkit.notebook.quick_onnx import median_ms, quick_export

__all__ = ["LayerRow", "ModelSummary", "summary"]


@dataclass
class ModelSummary:
    model: str
    layers: list[LayerRow] = field(default_factory=list)  # every submodule, in call order
    parameters: int = 0
    trainable: int = 0
    mult_adds: int = 0
    flops: int = 0
    activation_bytes: int = 0
    depth: int | None = 3
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    layer_cpu_us: dict[str, float] = field(default_factory=dict)  # module -> µs per call (ORT)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def shown(self) -> list[LayerRow]:
        return [r for r in self.layers if self.depth is None or r.depth <= self.depth]

    def cpu_us(self, row: LayerRow) -> float | None:
        """ONNX Runtime CPU time of a module and everything below it, µs per call."""
        if not self.layer_cpu_us:
            return None
        total = sum(
            us
            for m, us in self.layer_cpu_us.items()
            if m == row.name or m.startswith(row.name + ".")
        )
        return total or None

    def hotspots(self, n: int = 5) -> list[tuple[str, float, float]]:
        """The ``n`` modules with the most CPU time: (module, µs, share of the total)."""
        total = sum(self.layer_cpu_us.values()) or 1.0
        top = sorted(self.layer_cpu_us.items(), key=lambda kv: -kv[1])[:n]
        return [(m, us, us / total) for m, us in top]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "parameters": self.parameters,
            "trainable": self.trainable,
            "mult_adds": self.mult_adds,
            "flops": self.flops,
            "activation_bytes": self.activation_bytes,
            "latency_ms": dict(self.latency_ms),
            "layer_cpu_us": dict(self.layer_cpu_us),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "layers": [asdict(r) for r in self.layers],
        }

    def _headline(self) -> str:
        frozen = self.parameters - self.trainable
        return (
            f"{self.parameters:,} parameters ({frozen:,} frozen), "
            f"{_si(self.mult_adds)}mult-adds, {_si(self.activation_bytes)}B activations"
        )

    def __repr__(self) -> str:
        lines = [f"{self.model}: {self._headline()}"]
        rows = self.shown()
        width = max([len(r.name) + 2 * (r.depth - 1) for r in rows] + [5])
        for r in rows:
            label = "  " * (r.depth - 1) + r.name.rsplit(".", 1)[-1]
            lines.append(
                f"  {label:<{width}}  {r.kind:<18} {r.output_shape:<18} "
                f"{r.parameters:>10,}  {_si(r.mult_adds):>8}  {_us(self.cpu_us(r))}"
            )
        for runtime, ms in self.latency_ms.items():
            lines.append(f"  latency {runtime}: " + _ms(ms))
        lines.extend(f"  hot: {m} {us:.0f} µs ({share:.0%})" for m, us, share in self.hotspots())
        lines.extend(f"  WARNING: {w}" for w in self.warnings)
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f'<tr><td style="padding-left:{(r.depth - 1) * 14 + 4}px">'
            f"{escape(r.name.rsplit('.', 1)[-1])}</td><td>{escape(r.kind)}</td>"
            f"<td>{escape(r.input_shape)}</td><td>{escape(r.output_shape)}</td>"
            f"<td>{r.parameters:,}</td><td>{r.parameters - r.trainable:,}</td>"
            f"<td>{_si(r.mult_adds)}</td><td>{_si(r.activation_bytes)}B</td>"
            f"<td>{_us(self.cpu_us(r))}</td></tr>"
            for r in self.shown()
        )
        lat = "".join(
            f"<tr><td>{escape(k)}</td><td>{_ms(v)}</td></tr>" for k, v in self.latency_ms.items()
        )
        hot = "".join(
            f"<li>{escape(m)}: {us:.0f} µs ({share:.0%})</li>" for m, us, share in self.hotspots()
        )
        warn = "".join(f'<li style="color:#b35900">{escape(w)}</li>' for w in self.warnings)
        notes = "".join(f"<li>{escape(n)}</li>" for n in self.notes)
        return (
            f'<div class="labkit-summary"><b>{escape(self.model)}</b>: '
            f"{escape(self._headline())}"
            f"{'<ul class=labkit-warnings>' + warn + '</ul>' if warn else ''}"
            '<table class="labkit-table"><tr><th>layer</th><th>type</th><th>input</th>'
            "<th>output</th><th>parameters</th><th>frozen</th><th>mult-adds</th>"
            f"<th>activations</th><th>CPU µs (ORT)</th></tr>{rows}</table>"
            '<table class="labkit-table"><tr><th>CPU latency (this machine, p50)</th>'
            f"<th></th></tr>{lat}</table>"
            f"{'<p>where the CPU time goes:</p><ul>' + hot + '</ul>' if hot else ''}"
            f"{'<ul>' + notes + '</ul>' if notes else ''}</div>"
        )


def _ms(v: float | None) -> str:
    return f"{v:.3f} ms" if v is not None else "n/a"


def _us(v: float | None) -> str:
    return f"{v:.0f}" if v is not None else ""


def _si(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} "


def split_inputs(
    model: Any, example_inputs: Any, kwargs: dict[str, Any] | None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword inputs; a model with a cache is asked not to return one."""
    if isinstance(example_inputs, dict):
        args: tuple[Any, ...] = ()
        kw = dict(example_inputs)
    elif isinstance(example_inputs, (tuple, list)):
        args, kw = tuple(example_inputs), {}
    else:
        args, kw = (example_inputs,), {}
    kw.update(kwargs or {})
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    unknown = [
        k
        for k in kw
        if params and k not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values())
    ]
    if unknown:
        raise InputError(
            f"{type(model).__name__}.forward() has no parameter "
            f"{', '.join(map(repr, unknown))}; it takes {', '.join(params)}: "
            "rename the keys of example_inputs"
        )
    if "use_cache" in params and "use_cache" not in kw:
        kw["use_cache"] = False  # a returned cache is not a tensor output: nothing to export
    return args, kw


def summary(
    model: Any,
    example_inputs: Any,
    *,
    depth: int | None = 3,
    latency: bool = True,
    profile: bool = True,
    kwargs: dict[str, Any] | None = None,
) -> ModelSummary:
    """Analyze ``model`` on ``example_inputs``; ``depth=None`` shows every nested module."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "export") from None
    from labkit.notebook import prechecks

    args, kw = split_inputs(model, example_inputs, kwargs)
    result = ModelSummary(type(model).__name__, depth=depth)
    params = list(model.parameters())
    result.parameters = sum(int(p.numel()) for p in params)
    result.trainable = sum(int(p.numel()) for p in params if p.requires_grad)
    if (
        kw.get("use_cache") is False
        and "use_cache" not in (kwargs or {})
        and not (isinstance(example_inputs, dict) and "use_cache" in example_inputs)
    ):
        result.notes.append("called with use_cache=False (a cache is not a tensor output)")
    with preserved(model):
        model.eval()
        result.layers, whole = trace_layers(model, args, kw)
        result.mult_adds, result.flops = whole.mult_adds, whole.flops
        parents = {r.name.rsplit(".", 1)[0] for r in result.layers if "." in r.name}
        result.activation_bytes = sum(
            r.activation_bytes for r in result.layers if r.name not in parents
        )  # leaves: no double count
        result.warnings.extend(prechecks.quantization_warnings(model))
        if latency:
            # no_grad, not inference_mode: transformers 5.x GPT-2 ran ~100x slower under
            # inference_mode here (240 ms vs 1.3 ms per call), which is not its real cost.
            with torch.no_grad():
                result.latency_ms["pytorch"] = median_ms(lambda: model(*args, **kw))
            try:
                quick = quick_export(model, args, kw)
            except Exception as exc:  # noqa: BLE001 - any exporter failure is a warning
                result.latency_ms["onnxruntime"] = None
                result.warnings.append(prechecks.export_failure_warning(exc))
            else:
                result.warnings.extend(prechecks.tracer_warnings(quick.tracer_warnings))
                result.latency_ms["onnxruntime"] = quick.latency_ms()
                if profile:
                    result.layer_cpu_us = quick.layer_times_us()
    pt, ox = result.latency_ms.get("pytorch"), result.latency_ms.get("onnxruntime")
    if pt and ox:
        result.notes.append(
            f"ONNX Runtime fp32 is {pt / ox:.2f}× PyTorch eager at this batch "
            "size (the handoff also tries int8)"
        )
    if ox:
        result.notes.append(_cost_note(args, ox))
    return result


def _cost_note(args: tuple[Any, ...], ms: float) -> str:
    """Per-core throughput (and cost per million, given a price) of the quick ORT run."""

    from labkit.runtime.cost import cost, price_per_core_hour
    from labkit.runtime.machine import usable_cpus

    shape = tuple(getattr(args[0], "shape", ())) if args else ()
    rows = int(shape[0]) if shape else 1
    c = cost(rows * 1000.0 / ms, usable_cpus(), price_per_core_hour())
    money = (
        f", {c['cost_per_million']:.4g} per million inferences at "
        f"{c['price_per_core_hour']} per core-hour"
        if c["cost_per_million"]
        else " (set $LABKIT_PRICE_PER_CORE_HOUR for the cost per million)"
    )
    return f"ONNX Runtime fp32: {c['per_core_per_s']:,.0f} inferences/s per core{money}"
