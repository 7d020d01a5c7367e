"""How a model is called, and what it returns, as flat named tensors.

Researchers call models with positional tensors, a dict of tensors or keyword tensors, and
models return tensors, tuples, lists, dicts, dataclasses or Hugging Face ``ModelOutput``
(nested too). An ONNX graph has flat, named inputs and outputs. This module is the one
place that maps one onto the other:

* :class:`CallPlan` turns the flat input tensors back into the forward's arguments;
* :func:`flatten_outputs` names every tensor of a return value (``logits``,
  ``hidden_states.0``, ``output_1.0``), drops ``None`` and reports caches separately
  (``past_key_values``, ``DynamicCache``), which are state, not outputs.

torch is imported lazily, like in :mod:`labkit.registry`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import RegistrationError

__all__ = ["CallPlan", "Flat", "bind_inputs", "flatten_outputs", "select_outputs"]

CACHE_KEYS = ("past_key_values", "past_key_value", "cache", "mems")


def _is_tensor(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def _is_cache(key: str, value: Any) -> bool:
    """A key/value cache: HF ``Cache`` objects, or the tuples returned as past_key_values."""
    if value is None:
        return False
    kind = type(value)
    if any(c.__name__ == "Cache" or c.__name__.endswith("Cache") for c in kind.__mro__):
        return True
    return key.rsplit(".", 1)[-1] in CACHE_KEYS


@dataclass(frozen=True)
class CallPlan:
    """How the flat tensors (in ``names`` order) become ``forward``'s arguments.

    The first ``positional`` tensors go positionally, the rest by keyword (their name);
    ``constants`` are non-tensor keyword arguments passed on every call (``use_cache=False``).
    """

    names: tuple[str, ...]
    positional: int
    constants: Mapping[str, Any] = field(default_factory=dict)

    def arguments(self, tensors: Sequence[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args = tuple(tensors[: self.positional])
        kwargs = dict(zip(self.names[self.positional :], tensors[self.positional :]))
        return args, {**kwargs, **self.constants}

    def call(self, model: Any, tensors: Sequence[Any]) -> Any:
        args, kwargs = self.arguments(tensors)
        return model(*args, **kwargs)

    def with_constant(self, key: str, value: Any) -> CallPlan:
        return dataclasses.replace(self, constants={**self.constants, key: value})

    def describe(self, tensors: Sequence[Any]) -> str:
        """``input_0: float32[2, 8], attention_mask: int64[2, 8]`` for messages."""
        return ", ".join(
            f"{n}: {str(t.dtype).replace('torch.', '')}{list(t.shape)}"
            for n, t in zip(self.names, tensors)
        )


def forward_parameters(model: Any) -> tuple[list[inspect.Parameter], bool]:
    """The forward's named parameters, and whether it takes ``**kwargs``."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return [], True
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    named = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    return named, var_kw


def bind_inputs(
    model: Any,
    example_inputs: Any,
    kwargs: Mapping[str, Any] | None,
    argument: str = "example_inputs",
) -> tuple[CallPlan, tuple[Any, ...]]:
    """Positional tensors, a dict of tensors and keyword tensors → a plan and flat tensors.

    Positional tensors are named ``input_N``; dict keys and keywords keep their names, which
    must be parameters of ``forward`` (or it must take ``**kwargs``).
    """
    keyword: dict[str, Any] = {}
    if isinstance(example_inputs, Mapping):
        keyword.update(example_inputs)
        positional: tuple[Any, ...] = ()
    elif example_inputs is None:
        positional = ()
    elif _is_tensor(example_inputs):
        positional = (example_inputs,)
    elif isinstance(example_inputs, tuple | list):
        positional = tuple(example_inputs)
    else:
        raise RegistrationError(
            f"{argument} must be a tensor, a tuple of tensors (the forward's positional "
            f"arguments) or a dict of tensors by parameter name, got "
            f"{type(example_inputs).__name__}"
        )
    for key in kwargs or {}:
        if key in keyword:
            raise RegistrationError(
                f"input {key!r} is given both in {argument} and in kwargs; pass it once"
            )
    keyword.update(kwargs or {})
    for i, t in enumerate(positional):
        if not _is_tensor(t):
            raise RegistrationError(
                f"{argument}[{i}] is a {type(t).__name__}, not a torch.Tensor; convert it "
                "with torch.as_tensor(...), or pass non-tensor options by name in kwargs="
            )
    named, var_kw = forward_parameters(model)
    known = {p.name for p in named}
    tensors = {k: v for k, v in keyword.items() if _is_tensor(v)}
    constants = {k: v for k, v in keyword.items() if not _is_tensor(v)}
    for key in keyword:
        if not isinstance(key, str) or not key.isidentifier():
            raise RegistrationError(
                f"input name {key!r} is not a valid parameter name; "
                "dict keys must be forward's parameter names"
            )
        if key not in known and not var_kw:
            raise RegistrationError(
                f"{argument} passes {key!r}, but {type(model).__name__}.forward has no such "
                f"parameter (it takes {', '.join(sorted(known)) or 'only positional ones'}); "
                "use forward's parameter names as keys, or a tuple for positional arguments"
            )
        if key.startswith("input_") and key[6:].isdigit() and int(key[6:]) < len(positional):
            raise RegistrationError(
                f"keyword input {key!r} clashes with the name of "
                f"positional input number {key[6:]}; rename it"
            )
    for key, value in constants.items():
        if isinstance(value, list | tuple | Mapping) and any(
            _is_tensor(v) for v in (value.values() if isinstance(value, Mapping) else value)
        ):
            raise RegistrationError(
                f"input {key!r} is a {type(value).__name__} of tensors; labkit hands off "
                f"tensor inputs one by one: pass each tensor as its own keyword"
            )
    if not positional and not tensors:
        raise RegistrationError(
            f"{argument} has no tensors: pass the forward's inputs, shaped "
            "like one real batch (a tensor, a tuple or a dict of tensors)"
        )
    names = tuple(f"input_{i}" for i in range(len(positional))) + tuple(tensors)
    plan = CallPlan(names, len(positional), constants)
    return plan, (*positional, *tensors.values())


def flat_batch(plan: CallPlan, value: Any, argument: str) -> tuple[Any, ...]:
    """A parity batch in the same form as the example (tuple or dict) → flat tensors."""
    if isinstance(value, Mapping):
        missing = [n for n in plan.names if n not in value]
        extra = sorted(set(value) - set(plan.names))
        if missing or extra:
            raise RegistrationError(
                f"{argument} has keys {sorted(value)}; the model's inputs are {list(plan.names)}"
            )
        items = tuple(value[n] for n in plan.names)
    else:
        items = (value,) if _is_tensor(value) else value
        if not isinstance(items, tuple | list) or len(items) != len(plan.names):
            got = len(items) if isinstance(items, tuple | list) else type(value).__name__
            raise RegistrationError(
                f"{argument} has {got} tensors; the model takes {len(plan.names)} "
                f"({', '.join(plan.names)}): pass a tuple in that order or a dict by name"
            )
        items = tuple(items)
    for n, t in zip(plan.names, items):
        if not _is_tensor(t):
            raise RegistrationError(
                f"{argument}[{n!r}] is a {type(t).__name__}, not a "
                "torch.Tensor; convert it with torch.as_tensor(...)"
            )
    return items


@dataclass
class Flat:
    """A flattened return value: named tensors, caches found, and what could not be named."""

    tensors: dict[str, Any] = field(default_factory=dict)
    caches: dict[str, str] = field(default_factory=dict)  # path → type name
    unsupported: dict[str, str] = field(default_factory=dict)  # path → type name


def _items(obj: Any) -> list[tuple[str, Any]] | None:
    if isinstance(obj, Mapping):  # dict, OrderedDict, Hugging Face ModelOutput
        return [(str(k), v) for k, v in obj.items()]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    return None


def flatten_outputs(out: Any) -> Flat:
    """Name every tensor in ``out``.

    A bare tensor is ``output``; a top-level tuple or list gives ``output_0``, ``output_1``
    (one tensor alone stays ``output``); dict keys and dataclass fields name their values;
    nested values join with '.' (``hidden_states.0``). ``None`` is dropped.
    """
    flat = Flat()

    def walk(path: str, value: Any) -> None:
        if value is None:
            return
        if _is_tensor(value):
            flat.tensors[path] = value
            return
        if _is_cache(path, value):
            flat.caches[path] = type(value).__name__
            return
        items = _items(value)
        if items is not None:
            for key, item in items:
                walk(f"{path}.{key}" if path else key, item)
            return
        if isinstance(value, tuple | list):
            for i, item in enumerate(value):
                walk(f"{path}.{i}" if path else f"output_{i}", item)
            return
        flat.unsupported[path or "output"] = type(value).__name__

    if _is_tensor(out):
        flat.tensors["output"] = out
        return flat
    walk("", out)
    if isinstance(out, tuple | list) and list(flat.tensors) == ["output_0"]:
        flat.tensors = {"output": flat.tensors["output_0"]}
    return flat


def select_outputs(
    available: Sequence[str], wanted: Sequence[str] | None, returned: str
) -> tuple[str, ...]:
    """``outputs=[...]`` → the names kept; a prefix keeps its children (``hidden_states``)."""
    if wanted is None:
        return tuple(available)
    if isinstance(wanted, str) or not all(isinstance(w, str) for w in wanted) or not wanted:
        raise RegistrationError(
            f"outputs={wanted!r} must be a non-empty list of output names, "
            f"e.g. outputs={[available[0]] if available else ['logits']}"
        )
    kept: list[str] = []
    for w in wanted:
        match = [a for a in available if a == w or a.startswith(w + ".")]
        if not match:
            raise RegistrationError(
                f"outputs names {w!r}, but forward returned {returned} "
                f"with outputs {list(available)}; choose from those"
            )
        kept += [m for m in match if m not in kept]
    return tuple(kept)
