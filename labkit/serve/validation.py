"""Match a parsed inference request against a model's signature, before any inference.

Every check answers 400 with a message naming the tensor, the value seen and what the model
expects. Shapes are checked against the signature and against the data actually sent before
anything is allocated from them, so a dimension of 2**62 costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labkit.errors import InputError
from labkit.runtime.signature import check_shape
from labkit.serve.classification import PARAMETER, classification_count
from labkit.serve.codec import InferRequest, decode_binary, decode_json_data, oip_datatype
from labkit.serve.errors import BadRequest
from labkit.serve.repository import ServedModel

__all__ = ["WantedOutput", "bind_inputs", "check_parameters", "select_outputs"]


def _describe(spec: object) -> str:
    name, dtype, shape = (getattr(spec, a) for a in ("name", "dtype", "shape"))
    dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in shape)
    return f"{name}: {oip_datatype(dtype)}[{dims}]"


def bind_inputs(
    request: InferRequest, served: ServedModel, *, max_elements: int
) -> dict[str, np.ndarray]:
    specs = {s.name: s for s in served.model.inputs}
    signature = "; ".join(_describe(s) for s in served.model.inputs)
    seen: set[str] = set()
    bound: dict[str, int] = {}
    feeds: dict[str, np.ndarray] = {}
    for item in request.inputs:
        spec = specs.get(item.name)
        if spec is None:
            raise BadRequest(f"unknown input {item.name!r}; the model's inputs are: {signature}")
        if item.name in seen:
            raise BadRequest(f"input {item.name!r} is given twice")
        seen.add(item.name)
        want = oip_datatype(spec.dtype)
        if item.datatype != want:
            raise BadRequest(
                f"input {item.name!r} has datatype {item.datatype!r}, the model "
                f"expects {want} ({_describe(spec)})"
            )
        try:
            check_shape(item.name, item.shape, spec, bound, describe=_describe)
        except InputError as exc:
            raise BadRequest(str(exc)) from None
        count = math.prod(item.shape)
        if count > max_elements:
            raise BadRequest(
                f"input {item.name!r} has shape {list(item.shape)} = {count} "
                f"elements, more than a request body can hold ({max_elements})"
            )
        if item.binary is not None:
            feeds[item.name] = decode_binary(item.binary, item.datatype, item.shape, item.name)
        elif item.array is not None:
            if item.array.size != count:
                raise BadRequest(
                    f"input {item.name!r}: {item.array.size} elements for shape "
                    f"{list(item.shape)} ({count} expected)"
                )
            feeds[item.name] = item.array.reshape(item.shape)
        else:
            feeds[item.name] = decode_json_data(item.data, item.datatype, item.shape, item.name)
    missing = [n for n in specs if n not in seen]
    if missing:
        raise BadRequest(f"missing input(s) {missing}; the model's inputs are: {signature}")
    return feeds


@dataclass(frozen=True)
class WantedOutput:
    name: str
    binary: bool
    classification: int | None = None  # top-k classes instead of raw values


def _unsupported(where: str, parameters: dict[str, object], allowed: tuple[str, ...]) -> None:
    unknown = sorted(k for k in parameters if k not in allowed)
    if unknown:
        also = f"; supported here: {', '.join(allowed)}" if allowed else ""
        raise BadRequest(f"unsupported inference parameter(s) {unknown} on {where}{also}")


def check_parameters(request: InferRequest) -> None:
    """Every parameter a front end left is one this server does not support: 400 naming it,
    never silently ignored (an ignored one changes what the client thinks it got)."""
    _unsupported("the request", request.parameters, ())
    for item in request.inputs:
        _unsupported(f"input {item.name!r}", item.parameters, ())


def select_outputs(request: InferRequest, served: ServedModel) -> list[WantedOutput]:
    """Which outputs to return, in order, how (binary or not), and as classes or values."""
    specs = {s.name: s for s in served.model.outputs}
    names = list(specs)
    if request.outputs is None:
        return [WantedOutput(n, request.binary_output) for n in names]
    chosen: list[WantedOutput] = []
    for out in request.outputs:
        if out.name not in specs:
            raise BadRequest(f"unknown output {out.name!r}; the model's outputs are: {names}")
        if any(out.name == w.name for w in chosen):
            raise BadRequest(f"output {out.name!r} is requested twice")
        _unsupported(f"output {out.name!r}", out.parameters, (PARAMETER,))
        k = None
        if PARAMETER in out.parameters:
            datatype = oip_datatype(specs[out.name].dtype)
            k = classification_count(out.parameters[PARAMETER], out.name, datatype)
        binary = request.binary_output if out.binary is None else out.binary
        chosen.append(WantedOutput(out.name, binary, k))
    return chosen
