"""``labkit.summary(model, example_inputs)``: what the model costs, while it is designed.

Layers, output shapes, parameters, a FLOPs estimate (Linear/Conv/matmul-like layers), and the
measured CPU latency on this machine for PyTorch eager and for a quick ONNX Runtime export.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from labkit.errors import MissingDependencyError

__all__ = ["LayerRow", "ModelSummary", "summary"]


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: str
    parameters: int
    flops: int


@dataclass
class ModelSummary:
    model: str
    layers: list[LayerRow] = field(default_factory=list)
    parameters: int = 0
    flops: int = 0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "parameters": self.parameters, "flops": self.flops,
                "latency_ms": dict(self.latency_ms), "notes": list(self.notes),
                "layers": [vars(r) for r in self.layers]}

    def __repr__(self) -> str:
        lines = [f"{self.model}: {self.parameters:,} parameters, ~{_si(self.flops)}FLOPs"]
        width = max([len(r.name) for r in self.layers] + [5])
        for r in self.layers:
            lines.append(f"  {r.name:<{width}}  {r.kind:<14} {r.output_shape:<18} "
                         f"{r.parameters:>10,}  {_si(r.flops):>8}")
        for runtime, ms in self.latency_ms.items():
            lines.append(f"  latency {runtime}: " + (f"{ms:.3f} ms" if ms is not None else "n/a"))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(r.name)}</td><td>{escape(r.kind)}</td>"
            f"<td>{escape(r.output_shape)}</td><td>{r.parameters:,}</td><td>{_si(r.flops)}</td></tr>"
            for r in self.layers)
        lat = "".join(f"<tr><td>{escape(k)}</td><td>{_ms(v)}"
                      "</td></tr>" for k, v in self.latency_ms.items())
        notes = "".join(f"<li>{escape(n)}</li>" for n in self.notes)
        return (f'<div class="labkit-summary"><b>{escape(self.model)}</b>: '
                f"{self.parameters:,} parameters, ~{_si(self.flops)}FLOPs per call"
                '<table class="labkit-table"><tr><th>layer</th><th>type</th><th>output shape</th>'
                f"<th>parameters</th><th>FLOPs</th></tr>{rows}</table>"
                '<table class="labkit-table"><tr><th>CPU latency (this machine, p50)</th>'
                f"<th></th></tr>{lat}</table>{'<ul>' + notes + '</ul>' if notes else ''}</div>")


def _ms(v: float | None) -> str:
    return f"{v:.3f} ms" if v is not None else "n/a"


def _si(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} "


def _flops(module: Any, out: Any) -> int:
    import torch

    if not isinstance(out, torch.Tensor):
        return 0
    if isinstance(module, torch.nn.Linear):
        return 2 * module.in_features * out.numel()
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        k = int(torch.tensor(module.kernel_size).prod())
        return 2 * (module.in_channels // module.groups) * k * out.numel()
    if isinstance(module, (torch.nn.RNNBase,)):
        return 2 * sum(p.numel() for p in module.parameters()) * out.shape[0]
    return out.numel()  # elementwise layers: ~one op per output


def _median_ms(fn: Callable[[], object], budget_s: float = 0.4, max_runs: int = 200) -> float:
    fn()  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (time.perf_counter() - start < budget_s or len(times) < 5):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _onnx_latency(model: Any, args: tuple[Any, ...]) -> float:
    import onnxruntime as ort
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            # The quick TorchScript export is deliberate here (fast); its deprecation
            # notice would only clutter the notebook.
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, str(path), dynamo=False)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {i.name: a.detach().numpy() for i, a in zip(session.get_inputs(), args)}
    return _median_ms(lambda: session.run(None, feed))


def summary(model: Any, example_inputs: Any, *, latency: bool = True) -> ModelSummary:
    """Summarize ``model`` on ``example_inputs`` (a tensor or a tuple of tensors)."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "export") from None
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    kwargs: dict[str, Any] = {}
    if isinstance(example_inputs, Mapping):  # {"input_ids": ..., "attention_mask": ...}
        args, kwargs = (), dict(example_inputs)
    result = ModelSummary(type(model).__name__)
    result.parameters = sum(int(p.numel()) for p in model.parameters())
    hooks = []

    def hook(name: str) -> Callable[..., None]:
        def record(mod: Any, inputs: Any, out: Any) -> None:
            shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            params = sum(int(p.numel()) for p in mod.parameters(recurse=False))
            result.layers.append(LayerRow(name, type(mod).__name__, str(shape), params,
                                          _flops(mod, out)))
        return record

    for name, mod in model.named_modules():
        if name and not list(mod.children()):
            hooks.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(*args, **kwargs)
        for h in hooks:
            h.remove()
        hooks.clear()
        result.flops = sum(r.flops for r in result.layers)
        if latency:
            with torch.inference_mode():
                result.latency_ms["pytorch"] = _median_ms(lambda: model(*args, **kwargs))
            if kwargs:
                result.latency_ms["onnxruntime"] = None
                result.notes.append("quick ONNX timing skipped for dict inputs (the quick "
                                    "export is positional); labkit.handoff exports them")
            else:
                try:
                    result.latency_ms["onnxruntime"] = _onnx_latency(model, args)
                except Exception as exc:  # noqa: BLE001 - any exporter failure is a note
                    result.latency_ms["onnxruntime"] = None
                    result.notes.append(f"quick ONNX export failed: {type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    pt, ox = result.latency_ms.get("pytorch"), result.latency_ms.get("onnxruntime")
    if pt and ox:
        result.notes.append(f"ONNX Runtime fp32 is {pt / ox:.2f}× PyTorch eager at this batch "
                            "size (the handoff also tries int8)")
    return result
