"""Input checking against a bundle's signature: names, dtypes, ranks, fixed and named dims."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from labkit.bundle.tensors import TensorSpec
from labkit.errors import InputError

__all__ = ["TensorSpec", "bind", "check", "check_shape", "engine_error"]


def bind(
    specs: Sequence[TensorSpec], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Turn predict()'s arguments into ``{name: array}``, or raise one clear InputError."""
    names = [s.name for s in specs]
    if len(args) == 1 and isinstance(args[0], Mapping) and not kwargs:
        feed = dict(args[0])
    elif args and kwargs:
        raise InputError("pass inputs either positionally or by name, not both")
    elif kwargs:
        feed = dict(kwargs)
    else:
        if len(args) != len(specs):
            raise InputError(
                f"model takes {len(specs)} input(s) ({', '.join(names)}), "
                f"got {len(args)} positional array(s)"
            )
        feed = dict(zip(names, args))
    unknown = sorted(set(feed) - set(names))
    missing = [n for n in names if n not in feed]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown input(s) {unknown}")
        if missing:
            parts.append(f"missing input(s) {missing}")
        raise InputError(
            f"{' and '.join(parts)}; the model's inputs are: " + "; ".join(str(s) for s in specs)
        )
    return check(specs, feed)


def check_shape(
    name: str,
    shape: Sequence[int],
    spec: TensorSpec,
    bound: dict[str, int],
    describe: Callable[[TensorSpec], str] = str,
) -> None:
    """Check a shape against ``spec``; ``bound`` collects symbolic dims across inputs.

    Shared by ``predict`` and the server, which checks shapes before decoding any data.
    """
    if len(shape) != len(spec.shape):
        raise InputError(
            f"input {name!r} has shape {list(shape)} (rank {len(shape)}), the "
            f"model expects rank {len(spec.shape)}: {describe(spec)}"
        )
    for axis, (got, want) in enumerate(zip(shape, spec.shape)):
        if isinstance(want, int):
            if got != want:
                raise InputError(
                    f"input {name!r} has size {got} on axis {axis}, the model "
                    f"expects {want}: {describe(spec)}"
                )
            continue
        if got < 1:
            raise InputError(
                f"input {name!r} has size {got} on axis {axis} ({want}); it must be at least 1"
            )
        if bound.setdefault(want, got) != got:
            raise InputError(
                f"dimension {want!r} is {bound[want]} in one input and {got} in "
                f"{name!r}; inputs must agree on it"
            )


def check(specs: Sequence[TensorSpec], feed: Mapping[str, Any]) -> dict[str, np.ndarray]:
    bound: dict[str, int] = {}
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        value = feed[spec.name]
        if not isinstance(value, np.ndarray):
            raise InputError(
                f"input {spec.name!r} must be a numpy array, got "
                f"{type(value).__name__}; use np.asarray(x, dtype=np.{spec.dtype})"
            )
        if value.dtype != np.dtype(spec.dtype):
            raise InputError(
                f"input {spec.name!r} has dtype {value.dtype}, the model expects "
                f"{spec.dtype}; convert with x.astype(np.{spec.dtype})"
            )
        check_shape(spec.name, value.shape, spec, bound)
        out[spec.name] = np.ascontiguousarray(value)
    return out


_BOUNDS = re.compile(r"inclusive range \[-(\d+)\s*,\s*(\d+)\]")


def engine_error(
    specs: Sequence[TensorSpec], feed: Mapping[str, np.ndarray], exc: InputError
) -> InputError:
    """An engine's input error (its session's :class:`InputError`) as one error naming the
    input, the axis and the limit.

    The signature cannot state every limit (GPT-2 positions past ``n_positions``); the
    engine finds them, in its own words. A Gather out of bounds gives the table size, so
    the dynamic axis longer than it is the culprit.
    """
    text = exc.detail or str(exc)
    engine = exc.engine or "the engine"
    dynamic = [
        (s.name, axis, str(dim), int(feed[s.name].shape[axis]))
        for s in specs
        for axis, dim in enumerate(s.shape)
        if isinstance(dim, str) and axis > 0 and s.name in feed
    ]
    bounds = _BOUNDS.search(text)
    if bounds:
        limit = int(bounds.group(2)) + 1
        over = [d for d in dynamic if d[3] > limit]
        if over:
            name, axis, dim, size = max(over, key=lambda d: d[3])
            return InputError(
                f"input {name!r} has size {size} on axis {axis} ({dim}); this "
                f"model accepts at most {limit} there. Shorten it to {limit} or "
                f"less ({engine}: {text})",
                engine=exc.engine,
                detail=text,
            )
    sizes = ", ".join(f"{n!r} axis {a} ({d}) = {size}" for n, a, d, size in dynamic)
    where = f" with {sizes}" if sizes else ""
    return InputError(
        f"the model cannot run on these inputs{where}: a size is outside what "
        f"the model supports ({engine}: {text})",
        engine=exc.engine,
        detail=text,
    )
