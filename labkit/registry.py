"""Registering a model for handoff: ``labkit.register(model, example_inputs, name=...)``.

Registration checks what can be checked cheaply, now, where the researcher is looking: the
model is an ``nn.Module``, the inputs (positional, dict or keyword tensors) are ones it
accepts, what it returns can be named (:mod:`labkit.io_tree`), ``dynamic_axes`` are true of
it (:mod:`labkit.dynamic_axes`), the name is safe to use as a directory. The heavy checks
(export, parity) run in the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.bundle.manifest import NAME_RE  # one name rule: the bundle format's
from labkit.bundle.origin import ExperimentTrial
from labkit.dynamic_axes import BATCH, check_batch, normalize, propagate
from labkit.errors import MissingDependencyError, RegistrationError
from labkit.io_tree import (
    CallPlan,
    Flat,
    bind_inputs,
    flat_batch,
    flatten_outputs,
    forward_parameters,
    select_outputs,
)
from labkit.model_state import preserved

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
    call: CallPlan | None = None  # how flat inputs become forward's arguments
    notes: tuple[str, ...] = ()  # what registration decided on the user's behalf
    experiment: ExperimentTrial | None = None  # the experiment trial it is (provenance)

    def plan(self) -> CallPlan:
        return self.call or CallPlan(self.input_names, len(self.input_names))

    def outputs_of(
        self, model: torch.nn.Module, tensors: Sequence[Any]
    ) -> tuple[torch.Tensor, ...]:
        """Run ``model`` on flat input tensors; its outputs, flat, in ``output_names`` order."""
        flat = flatten_outputs(self.plan().call(model, tensors)).tensors
        missing = [n for n in self.output_names if n not in flat]
        if missing:
            raise RegistrationError(
                f"forward did not return {missing} on these inputs (it returned "
                f"{list(flat)}); its outputs must not depend on the input values"
            )
        return tuple(flat[n] for n in self.output_names)

    def __repr__(self) -> str:
        inputs = ", ".join(
            f"{n}: {str(t.dtype).replace('torch.', '')}{list(t.shape)}"
            for n, t in zip(self.input_names, self.example_inputs)
        )
        return (
            f"ModelSpec(name={self.name!r}, model={type(self.model).__name__}, "
            f"inputs=[{inputs}], task={self.task!r})"
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-safe summary: name, task, model class, inputs, parameter count."""
        return {
            "name": self.name,
            "task": self.task,
            "model": type(self.model).__name__,
            "inputs": [
                {"name": n, "shape": list(t.shape), "dtype": str(t.dtype)}
                for n, t in zip(self.input_names, self.example_inputs)
            ],
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "export") from None
    return torch


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RegistrationError(
            f"name={name!r} is not a safe bundle name: use 1–64 lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit (e.g. name='digits-mlp')"
        )
    return name


def _where(exc: BaseException) -> str:
    """The innermost frame of a traceback, ``file:line in function``, to point at the code."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return ""
    code = last.tb_frame.f_code
    return f" (at {Path(code.co_filename).name}:{last.tb_lineno} in {code.co_name})"


def _run(model: Any, plan: CallPlan, tensors: tuple[Any, ...], what: str) -> Any:
    """Call forward in eval mode, without grad; a failure names the call, never guesses."""
    torch = _torch()
    try:
        with preserved(model), torch.no_grad():
            model.eval()
            return plan.call(model, tensors)
    except Exception as exc:  # the user's forward can raise anything
        raise RegistrationError(
            f"{type(model).__name__}.forward raised on {what} ({plan.describe(tensors)}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            f"{_where(exc)}. If the inputs are wrong, pass inputs shaped like one real batch; "
            "otherwise fix the model code at that line"
        ) from exc


def _flatten(
    model: Any, plan: CallPlan, tensors: tuple[Any, ...], outputs: Sequence[str] | None
) -> tuple[CallPlan, Flat, str, list[str]]:
    """Run forward once and name its outputs; turn caches off where forward allows it."""
    notes: list[str] = []
    out = _run(model, plan, tensors, "example_inputs")
    flat = flatten_outputs(out)
    returned = type(out).__name__
    if flat.caches:
        cache_text = ", ".join(f"{k} ({v})" for k, v in flat.caches.items())
        named, _ = forward_parameters(model)
        if "use_cache" in {p.name for p in named} and "use_cache" not in plan.constants:
            plan = plan.with_constant("use_cache", False)
            out = _run(model, plan, tensors, "example_inputs with use_cache=False")
            flat = flatten_outputs(out)
            notes.append(
                f"forward returned a cache, {cache_text}: caches are state, not "
                "outputs, so labkit calls it with use_cache=False"
            )
        if flat.caches and outputs is None:
            raise RegistrationError(
                f"forward returned a cache, {cache_text}: caches are state, not outputs. "
                "Pass use_cache=False in kwargs= if forward takes it, or outputs=[...] to "
                f"choose from {list(flat.tensors)}"
            )
    if flat.unsupported and outputs is None:
        path, kind = next(iter(flat.unsupported.items()))
        raise RegistrationError(
            f"forward returned {returned} whose {path!r} is of type {kind}, not a tensor: labkit "
            "hands off tensors (alone or in tuples, lists, dicts, dataclasses, ModelOutput). "
            f"Return tensors only, or pass outputs=[...] to choose from {list(flat.tensors)}"
        )
    if not flat.tensors:
        raise RegistrationError(
            f"forward returned {returned} with no tensors in it; return "
            "the model's outputs as tensors"
        )
    return plan, flat, returned, notes


def register(
    model: Any,
    example_inputs: Any = None,
    *,
    name: str,
    kwargs: Mapping[str, Any] | None = None,
    task: str | None = None,
    labels: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    outputs: Sequence[str] | None = None,
    parity_inputs: Sequence[Any] | None = None,
    tolerance: float | None = None,
    **unknown: Any,
) -> ModelSpec:
    """Register ``model`` for handoff and return its :class:`ModelSpec`.

    ``example_inputs`` is one real-looking batch, passed the way forward takes it: a tensor,
    a tuple of tensors (positional; named ``input_0``, ``input_1``…) or a dict of tensors by
    parameter name (``{'input_ids': ids, 'attention_mask': mask}``, names kept). ``kwargs``
    adds keyword arguments: tensors become named inputs, other values (``return_dict=True``)
    are passed on every call. Whatever forward returns (tensors, tuples, dicts, dataclasses,
    ``ModelOutput``) is flattened into named outputs; ``outputs=['logits']`` keeps some.
    Axis 0 of every input and output is dynamic (the batch); declare more with
    ``dynamic_axes={'input_ids': {1: 'sequence'}}`` (outputs that follow are declared too).
    ``parity_inputs`` is a list of real batches (each in the form of ``example_inputs``)
    checked against PyTorch and used to calibrate quantization. ``tolerance`` is the fp32
    relative error allowed (default 1e-4).
    """
    if unknown:
        key = next(iter(unknown))
        raise RegistrationError(
            f"register() has no option {key!r}. Pass the model's inputs as a dict, "
            f"register(model, {{{key!r}: ...}}, name=...), or as kwargs={{{key!r}: ...}}"
        )
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise RegistrationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    name = _check_name(name)
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise RegistrationError(
            f"kwargs must be a dict of keyword arguments, got {type(kwargs).__name__}"
        )
    plan, inputs = bind_inputs(model, example_inputs, kwargs)
    if task is not None and task not in TASKS:
        raise RegistrationError(f"task={task!r} is not one of {TASKS}")
    if labels is not None:
        labels = tuple(labels)
        if not all(isinstance(x, str) for x in labels):
            raise RegistrationError("labels must be a list of strings")
    if tolerance is not None and not (isinstance(tolerance, int | float) and 0 < tolerance < 1):
        raise RegistrationError(f"tolerance={tolerance!r} must be a number in (0, 1), e.g. 1e-4")
    parity = tuple(
        flat_batch(plan, p, f"parity_inputs[{i}]") for i, p in enumerate(parity_inputs or ())
    )
    plan, flat, returned, notes = _flatten(model, plan, inputs, outputs)
    output_names = select_outputs(list(flat.tensors), outputs, returned)
    if outputs is None and returned not in ("Tensor", "tuple", "list"):
        notes.append(
            f"forward returned {returned}: labkit hands off its tensors as "
            f"outputs {', '.join(output_names)}; pass outputs=[...] to choose"
        )
    in_shapes = {n: tuple(t.shape) for n, t in zip(plan.names, inputs)}
    out_shapes = {n: tuple(flat.tensors[n].shape) for n in output_names}
    axes = normalize(dynamic_axes, in_shapes, out_shapes)

    def run_resized(dim: str, size: int) -> dict[str, tuple[int, ...]]:
        resized = resize(inputs, plan.names, axes, dim, size)
        out = flatten_outputs(_run(model, plan, resized, f"inputs with {dim}={size}"))
        return {n: tuple(out.tensors[n].shape) for n in output_names if n in out.tensors}

    check_batch(in_shapes, out_shapes, run_resized)
    axes, axis_notes = propagate(axes, in_shapes, out_shapes, run_resized)
    spec = ModelSpec(
        model=model,
        example_inputs=inputs,
        name=name,
        task=task,
        labels=labels,
        dynamic_axes=axes,
        parity_inputs=parity,
        tolerance=float(tolerance) if tolerance is not None else None,
        input_names=plan.names,
        output_names=output_names,
        call=plan,
        notes=(*notes, *axis_notes),
    )
    _REGISTRY[name] = spec
    return spec


def resize(
    tensors: Sequence[Any],
    names: Sequence[str],
    axes: Mapping[str, Mapping[int, str]],
    dim: str,
    size: int,
) -> tuple[Any, ...]:
    """The tensors with every axis named ``dim`` (axis 0: ``batch``) cut or grown to ``size``.

    Cutting and repeating real values keeps token ids valid ids and masks masks.
    """
    out = []
    for name, t in zip(names, tensors):
        declared = dict(axes.get(name, {}))
        if t.dim():
            declared.setdefault(0, BATCH)
        for axis, d in declared.items():
            if d != dim:
                continue
            have = int(t.shape[axis])
            if size <= have:
                t = t.narrow(axis, 0, size)
            else:
                reps = [1] * t.dim()
                reps[axis] = -(-size // have)
                t = t.repeat(*reps).narrow(axis, 0, size)
        out.append(t)
    return tuple(out)


def registered() -> dict[str, ModelSpec]:
    """The models registered in this process, by name (latest registration wins)."""
    return dict(_REGISTRY)
