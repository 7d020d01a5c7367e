"""The exported signature, checked against what the graph really does.

A manifest's signature is what Triton configs, servers and client code are built from, so it
must tell the truth. After export, every dynamic input axis is run at two sizes (the
example's, then each changed at once) and every output's real shape is compared with the
signature the manifest will carry: a fixed dim must keep its size, a named dim must take the
size its inputs gave that name, a name seen only on outputs must mean one size per run.
Any mismatch is a :class:`SignatureError` naming the output, the axis and both sizes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from labkit.errors import LabkitError, SignatureError
from labkit.runtime import engines
from labkit.runtime.engines import Candidate

Dims = list[int | str]


def _other(size: int) -> int:
    return size - 1 if size > 2 else size + 1


def _resize(a: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Cut, or grow by repeating the array's own values (ids stay valid ids)."""
    have = a.shape[axis]
    if size <= have:
        return np.take(a, np.arange(size), axis=axis)
    reps = [1] * a.ndim
    reps[axis] = -(-size // have)
    return np.take(np.tile(a, reps), np.arange(size), axis=axis)


def _dims(value: onnx.ValueInfoProto) -> Dims:
    return [
        int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
        for d in value.type.tensor_type.shape.dim
    ]


def declare_outputs(model: onnx.ModelProto, declared: Mapping[str, Mapping[int, str]]) -> None:
    """Give declared output axes their names where the exporter traced a fixed size.

    Only annotations change; :func:`check` then proves the graph really follows them. The
    exporter's shapes of intermediate values then carry the same stale size (a GRU's output
    at the example's length), and ONNX Runtime's optimizer would put it back on the output:
    they are dropped, to be inferred again.
    """
    changed = False
    for value in model.graph.output:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            name = declared.get(value.name, {}).get(axis)
            if name and not dim.dim_param:
                dim.Clear()
                dim.dim_param = name
                changed = True
    if changed:
        del model.graph.value_info[:]


def _feeds(
    model: onnx.ModelProto, example: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, int], dict[str, int]]:
    """Inputs with every symbolic dim changed, and each dim's size before and after."""
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    feed = {}
    init = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name in init:
            continue
        a = example[value.name]
        for axis, dim in enumerate(_dims(value)):
            if isinstance(dim, str):
                before.setdefault(dim, int(a.shape[axis]))
                after.setdefault(dim, _other(before[dim]))
                a = _resize(a, axis, after[dim])
        feed[value.name] = a
    return feed, before, after


def _compare(
    model: onnx.ModelProto, results: Sequence[Any], sizes: Mapping[str, int], label: str
) -> str | None:
    free: dict[str, tuple[str, int]] = {}
    for value, got in zip(model.graph.output, results):
        shape = list(np.shape(got))
        dims = _dims(value)
        if len(shape) != len(dims):
            return (
                f"output {value.name!r} has rank {len(shape)} ({shape}) {label}, the "
                f"signature says rank {len(dims)} {dims}"
            )
        for axis, (want, have) in enumerate(zip(dims, shape)):
            if isinstance(want, int):
                if want != have:
                    return (
                        f"output {value.name!r} axis {axis} is {have} {label}, but the "
                        f"signature fixes it at {want} ({dims})"
                    )
            elif want in sizes:
                if sizes[want] != have:
                    return (
                        f"output {value.name!r} axis {axis} is {have} {label}, but the "
                        f"signature says {want!r}, which is {sizes[want]} there ({dims})"
                    )
            elif free.setdefault(want, (value.name, have))[1] != have:
                return (
                    f"output dim {want!r} is {free[want][1]} on {free[want][0]!r} and "
                    f"{have} on {value.name!r} {label}"
                )
    return None


def check(model: onnx.ModelProto, example: Mapping[str, np.ndarray], *, declare_hint: str) -> None:
    """Run the graph at the example's sizes and with every dynamic dim changed; compare."""
    session = engines.make_session(model.SerializeToString(), Candidate("-", threads=1))
    names = [o.name for o in model.graph.output]
    feed_b, before, after = _feeds(model, example)
    init = {i.name for i in model.graph.initializer}
    feed_a = {v.name: example[v.name] for v in model.graph.input if v.name not in init}
    for feed, sizes in ((feed_a, before), (feed_b, after)):
        label = (
            "with " + ", ".join(f"{d}={n}" for d, n in sizes.items()) if sizes else "on the example"
        )
        try:
            results = session.run(names, feed)
        except LabkitError as exc:  # the engine's InputError / EngineError
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise SignatureError(
                f"the exported graph fails {label} (example: "
                + ", ".join(f"{d}={n}" for d, n in before.items())
                + f"): {first}. The export fixed a size the signature calls dynamic (e.g. a "
                f"reshape to a constant): use x.shape in forward, or {declare_hint}"
            ) from exc
        problem = _compare(model, results, sizes, label)
        if problem:
            raise SignatureError(
                f"the exported signature would be wrong: {problem}. "
                f"{declare_hint[0].upper()}{declare_hint[1:]}"
            )
