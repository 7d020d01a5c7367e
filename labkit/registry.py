"""Registering a model for handoff: ``labkit.register(model, example_inputs, name=...)``.

Registration checks what can be checked cheaply, now, where the researcher is looking: the
model is an ``nn.Module``, the inputs are tensors it accepts, the name is safe to use as a
directory. The heavy checks (export, parity) run in the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.bundle.manifest import NAME_RE  # one name rule: the bundle format's
from labkit.errors import MissingDependencyError, RegistrationError

if TYPE_CHECKING:
    import torch

__all__ = ["ModelSpec", "register", "registered"]

TASKS = ("classification", "regression", "embedding", "other")
_REGISTRY: dict[str, ModelSpec] = {}


@dataclass(frozen=True)
class ModelSpec:
    """Everything the pipeline needs to hand one model off."""

    model: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    name: str
    task: str | None = None
    labels: tuple[str, ...] | None = None
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    parity_inputs: tuple[tuple[torch.Tensor, ...], ...] = ()
    tolerance: float | None = None
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    source: Path | None = None

    def __repr__(self) -> str:
        inputs = ", ".join(f"{n}: {str(t.dtype).replace('torch.', '')}{list(t.shape)}"
                           for n, t in zip(self.input_names, self.example_inputs))
        return (f"ModelSpec(name={self.name!r}, model={type(self.model).__name__}, "
                f"inputs=[{inputs}], task={self.task!r})")

    def describe(self) -> dict[str, Any]:
        """A JSON-safe summary: name, task, model class, inputs, parameter count."""
        return {
            "name": self.name,
            "task": self.task,
            "model": type(self.model).__name__,
            "inputs": [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype)}
                       for n, t in zip(self.input_names, self.example_inputs)],
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "export") from None
    return torch


def _as_tuple(value: Any, argument: str) -> tuple[Any, ...]:
    torch = _torch()
    items = (value,) if isinstance(value, torch.Tensor) else value
    if not isinstance(items, Sequence) or isinstance(items, str | bytes) or not items:
        raise RegistrationError(
            f"{argument} must be a tensor or a tuple of tensors (the forward's positional "
            f"arguments), got {type(value).__name__}")
    for i, t in enumerate(items):
        if not isinstance(t, torch.Tensor):
            raise RegistrationError(
                f"{argument}[{i}] is a {type(t).__name__}, not a torch.Tensor; convert it "
                f"with torch.as_tensor(...)")
    return tuple(items)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RegistrationError(
            f"name={name!r} is not a safe bundle name: use 1–64 lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit (e.g. name='digits-mlp')")
    return name


def _output_count(model: Any, inputs: tuple[Any, ...]) -> int:
    torch = _torch()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(*inputs)
    except Exception as exc:  # the user's forward can raise anything
        raise RegistrationError(
            f"the model rejected example_inputs (shapes "
            f"{[list(t.shape) for t in inputs]}): {type(exc).__name__}: {exc}. Pass inputs "
            "shaped like one real batch") from exc
    finally:
        model.train(was_training)
    outs = (out,) if isinstance(out, torch.Tensor) else out
    if not isinstance(outs, tuple | list) or not all(isinstance(o, torch.Tensor) for o in outs):
        raise RegistrationError(
            f"the model's forward returned {type(out).__name__}; labkit hands off models that "
            "return a tensor or a tuple of tensors")
    return len(outs)


def _check_dynamic_axes(dynamic_axes: Any, names: list[str]) -> dict[str, dict[int, str]]:
    if dynamic_axes is None:
        return {}
    if not isinstance(dynamic_axes, Mapping):
        raise RegistrationError("dynamic_axes must map an input name to {axis: 'dim_name'}, "
                                "e.g. {'input_0': {1: 'sequence'}}")
    out: dict[str, dict[int, str]] = {}
    for key, axes in dynamic_axes.items():
        if key not in names:
            raise RegistrationError(f"dynamic_axes names {key!r}, but the inputs/outputs are "
                                    f"{names}")
        if not isinstance(axes, Mapping) or not all(
                isinstance(a, int) and isinstance(d, str) and d for a, d in axes.items()):
            raise RegistrationError(f"dynamic_axes[{key!r}] must map axis numbers to dimension "
                                    "names, e.g. {1: 'sequence'}")
        out[key] = dict(axes)
    return out


def register(model: Any, example_inputs: Any, *, name: str, task: str | None = None,
             labels: Sequence[str] | None = None,
             dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
             parity_inputs: Sequence[Any] | None = None,
             tolerance: float | None = None) -> ModelSpec:
    """Register ``model`` for handoff and return its :class:`ModelSpec`.

    ``example_inputs`` is a tensor or a tuple of tensors: the forward's positional arguments,
    shaped like one real batch. Axis 0 of every input and output is dynamic (the batch);
    declare more with ``dynamic_axes={'input_0': {1: 'sequence'}}``. ``parity_inputs`` is a
    list of real batches (each a tensor or tuple) checked against PyTorch and used to
    calibrate quantization. ``tolerance`` is the fp32 relative error allowed (default 1e-4).
    """
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise RegistrationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    name = _check_name(name)
    inputs = _as_tuple(example_inputs, "example_inputs")
    if task is not None and task not in TASKS:
        raise RegistrationError(f"task={task!r} is not one of {TASKS}")
    if labels is not None:
        labels = tuple(labels)
        if not all(isinstance(x, str) for x in labels):
            raise RegistrationError("labels must be a list of strings")
    if tolerance is not None and not (isinstance(tolerance, int | float) and 0 < tolerance < 1):
        raise RegistrationError(f"tolerance={tolerance!r} must be a number in (0, 1), e.g. 1e-4")
    parity = tuple(_as_tuple(p, f"parity_inputs[{i}]") for i, p in enumerate(parity_inputs or ()))
    for i, batch in enumerate(parity):
        if len(batch) != len(inputs):
            raise RegistrationError(f"parity_inputs[{i}] has {len(batch)} tensors; the model "
                                    f"takes {len(inputs)}")
    n_out = _output_count(model, inputs)
    input_names = tuple(f"input_{i}" for i in range(len(inputs)))
    output_names = ("output",) if n_out == 1 else tuple(f"output_{i}" for i in range(n_out))
    axes = _check_dynamic_axes(dynamic_axes, [*input_names, *output_names])
    spec = ModelSpec(model=model, example_inputs=inputs, name=name, task=task, labels=labels,
                     dynamic_axes=axes, parity_inputs=parity,
                     tolerance=float(tolerance) if tolerance is not None else None,
                     input_names=input_names, output_names=output_names)
    _REGISTRY[name] = spec
    return spec


def registered() -> dict[str, ModelSpec]:
    """The models registered in this process, by name (latest registration wins)."""
    return dict(_REGISTRY)
