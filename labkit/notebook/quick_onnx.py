"""A quick ONNX Runtime export of a model being designed: latency and per-layer CPU time.

Shared by ``labkit.summary`` and ``labkit.experiment`` so both report the same number. The
TorchScript exporter is deliberate here (well under a second; the handoff itself uses the
dynamo exporter). ORT's profiler (``SessionOptions.enable_profiling``) times every node; the
exporter names nodes after their module scope (``/encoder/layer.0/Gemm``), which maps the
time back to the module.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.model_state import preserved

__all__ = ["QuickExport", "median_ms", "quick_export"]


def median_ms(fn: Callable[[], object], budget_s: float = 0.4, max_runs: int = 200) -> float:
    fn()  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (time.perf_counter() - start < budget_s or len(times) < 5):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


@dataclass
class QuickExport:
    """The exported graph in memory, a session on it and what the export warned about."""

    model_bytes: bytes
    session: Any
    feed: dict[str, Any]
    tracer_warnings: list[str] = field(default_factory=list)
    modules: frozenset[str] = frozenset()  # the model's module paths, to resolve node scopes
    exporter: str = "torchscript"
    scopes: dict[str, str] = field(default_factory=dict)  # dynamo node -> module (metadata)
    profiled_run_us: float | None = None  # median whole run in the profiled session

    def latency_ms(self, budget_s: float = 0.4) -> float:
        return median_ms(lambda: self.session.run(None, self.feed), budget_s)

    def layer_times_us(self, runs: int = 20) -> dict[str, float]:
        """Median CPU µs per call for each module, from ONNX Runtime's profiler, on the
        *unfused* graph (basic optimizations: one kernel per exported node, so every time
        has an owner). The same session's median whole run is kept in ``profiled_run_us``:
        the per-module times plus what runs between kernels add up to it."""
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            opts = ort.SessionOptions()
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tmp) / "profile")
            opts.log_severity_level = 3
            # Basic level keeps one kernel per exported node, so every time has an owner.
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            session = ort.InferenceSession(
                self.model_bytes, opts, providers=["CPUExecutionProvider"]
            )
            for _ in range(runs):
                session.run(None, self.feed)
            events = json.loads(Path(session.end_profiling()).read_text())
        import onnx

        from labkit.pipeline.scopes import module_paths

        self.scopes = module_paths(onnx.load_from_string(self.model_bytes))
        per_node: dict[str, list[float]] = {}
        whole: list[float] = []
        for ev in events:
            name = str(ev.get("name", ""))
            if ev.get("cat") == "Node" and name.endswith("_kernel_time"):
                per_node.setdefault(name[: -len("_kernel_time")], []).append(float(ev["dur"]))
            elif ev.get("cat") == "Session" and name == "model_run":
                whole.append(float(ev["dur"]))
        self.profiled_run_us = statistics.median(whole) if whole else None
        totals: dict[str, float] = {}
        for node, durations in per_node.items():
            # The median per node: the first call's one-off allocations are not its cost.
            module = _module(node, self.modules, self.scopes)
            totals[module] = totals.get(module, 0.0) + statistics.median(durations)
        return totals


def _module(node_name: str, known: frozenset[str], scopes: dict[str, str]) -> str:
    """The module a TorchScript-exported node belongs to, as a path of ``named_modules``.

    The exporter's scope components are relative (``/enc/layers.0/Gemm``) or, under an
    ``nn.Sequential``, absolute (``/head/head.0/Gemm``): each is resolved against the known
    module paths.
    """
    if not node_name.startswith("/"):  # dynamo: the scope is in the node's metadata
        from labkit.pipeline.scopes import lookup

        found = lookup(scopes, node_name) or ""
        return found.removeprefix("model").removeprefix(".") or "(top level)"
    parts = [p for p in node_name.split("/") if p][:-1]
    if parts[:1] == ["model"]:  # the binding wrapper's scope
        parts = parts[1:]
    current = ""
    for part in parts:
        relative = f"{current}.{part}" if current else part
        absolute = part.removeprefix("model.")  # absolute paths include the wrapper's name
        if relative in known:
            current = relative
        elif absolute in known:
            current = absolute
        else:  # a functional op's own scope (``/attn/MatMul/...``): stays with its module
            break
    return current or "(top level)"


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Silence Python and C++ output (a failed TorchScript export dumps its whole IR graph)."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _bound(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``model`` with its non-tensor keywords bound: the exporter takes tensors only, in order."""
    import torch

    names = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
    constants = {k: v for k, v in kwargs.items() if k not in names}
    n_pos = len(args)

    class Bound(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(*tensors[:n_pos], **dict(zip(names, tensors[n_pos:])), **constants)

    return Bound(), names


def quick_export(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> QuickExport:
    """Export ``model(*args, **kwargs)`` with TorchScript and open an ORT session on it.

    The exporters flip training flags; the researcher's module is put back as it was.
    """
    with preserved(model):
        return _quick_export(model, args, kwargs)


def _quick_export(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> QuickExport:
    import onnxruntime as ort
    import torch

    wrapper, names = _bound(model, args, kwargs)
    input_names = [f"input_{i}" for i in range(len(args))] + names
    tensors = (*args, *(kwargs[n] for n in names))
    exporter = "torchscript"
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = Path(tmp) / "model.onnx"
        try:
            with _silenced():
                torch.onnx.export(
                    wrapper, tensors, str(path), dynamo=False, input_names=input_names
                )
        except Exception as first:  # noqa: BLE001 - retried with the handoff's exporter
            # The handoff exports with dynamo first; some models (GPT-2's aten::diff) only
            # go through it. Slower (seconds), so only as the fallback.
            try:
                with _silenced():
                    torch.onnx.export(
                        wrapper,
                        tensors,
                        str(path),
                        dynamo=True,
                        input_names=input_names,
                        external_data=False,
                    )
            except Exception:  # noqa: BLE001
                raise first from None
            exporter = f"dynamo (TorchScript failed: {str(first).splitlines()[0][:120]})"
        data = path.read_bytes()
    # Warnings raised inside installed libraries (torch's rnn.py, transformers' masks) are
    # their own shape checks: only the model's own code is worth a warning.
    libs = (str(Path(torch.__file__).parent.parent), "site-packages", "dist-packages")
    tracer = sorted(
        {
            f"{Path(w.filename).name}:{w.lineno}: {str(w.message).split('. ')[0]}"
            for w in caught
            if issubclass(w.category, torch.jit.TracerWarning)
            and not any(lib in str(w.filename) for lib in libs)
        }
    )
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    given = dict(zip(input_names, tensors))
    feed = {i.name: given[i.name].detach().cpu().numpy() for i in session.get_inputs()}
    modules = frozenset(name for name, _ in model.named_modules() if name)
    return QuickExport(data, session, feed, tracer, modules, exporter)
