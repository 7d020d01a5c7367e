"""gRPC messages <-> the data plane's protocol-neutral requests and results.

A tensor arrives either as raw little-endian bytes (``raw_input_contents``, what
tritonclient sends; then every input must come that way, as the protocol says) or as typed
contents (``fp32_contents`` ...): exactly the field the datatype names, values range-checked
before they are narrowed (an INT8 sent as 300 is refused, never wrapped). Outputs always go
back as raw bytes, as Triton answers. Parameters become plain values; the data plane refuses
any it does not support.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labkit.serve.codec import OIP_TO_NUMPY, InferRequest, RequestInput, RequestOutput, tensor_bytes
from labkit.serve.codec import oip_datatype as _oip_datatype
from labkit.serve.errors import BadRequest

__all__ = ["infer_request", "infer_response"]

# datatype -> the typed-contents field that carries it, and that field's element type
_CONTENTS: dict[str, tuple[str, Any]] = {
    "BOOL": ("bool_contents", np.bool_),
    "INT8": ("int_contents", np.int32),
    "INT16": ("int_contents", np.int32),
    "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint32),
    "UINT16": ("uint_contents", np.uint32),
    "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64),
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
    "BYTES": ("bytes_contents", object),
}


def _parameters(params: Any, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        if which is None:
            raise BadRequest(f"parameter {key!r} of {where} has no value")
        out[key] = getattr(value, which)
    return out


def _shape(values: Any, name: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in values)
    if any(d < 0 for d in shape):
        raise BadRequest(f"input {name!r}: shape {list(shape)} has a negative dimension")
    return shape


def _typed(contents: Any, datatype: str, name: str) -> np.ndarray:
    """Typed contents -> a flat array of the datatype's dtype (range-checked)."""
    present = [f.name for f, _ in contents.ListFields()]
    if datatype not in OIP_TO_NUMPY:
        raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}")
    if datatype not in _CONTENTS:
        raise BadRequest(f"input {name!r}: {datatype} data must be sent in raw_input_contents")
    field, wire = _CONTENTS[datatype]
    if present and present != [field]:
        raise BadRequest(
            f"input {name!r}: {datatype} data goes in contents.{field}, got {', '.join(present)}"
        )
    values = getattr(contents, field)
    if datatype == "BYTES":
        return np.array(list(values), dtype=object)
    array = np.asarray(values, dtype=wire)
    dtype = OIP_TO_NUMPY[datatype]
    if dtype != array.dtype and array.size:
        info = np.iinfo(dtype)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise BadRequest(f"input {name!r}: values out of range for {datatype}")
    return array.astype(dtype, copy=False)


def infer_request(message: Any) -> InferRequest:
    """A ``ModelInferRequest`` as the data plane's request."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs; "
            "send every input raw, or none"
        )
    if not message.inputs:
        raise BadRequest("inputs must be a non-empty list")
    inputs = []
    for i, item in enumerate(message.inputs):
        name, datatype = item.name, item.datatype
        shape = _shape(item.shape, name)
        params = _parameters(item.parameters, f"input {name!r}")
        if raw:
            if item.HasField("contents"):
                raise BadRequest(f"input {name!r} has both contents and raw_input_contents")
            if datatype not in OIP_TO_NUMPY:
                raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}")
            tensor = RequestInput(name, datatype, shape, binary=raw[i], parameters=params)
        else:
            array = _typed(item.contents, datatype, name)
            tensor = RequestInput(name, datatype, shape, array=array, parameters=params)
        inputs.append(tensor)
    outputs = [
        RequestOutput(o.name, None, _parameters(o.parameters, f"output {o.name!r}"))
        for o in message.outputs
    ]
    return InferRequest(
        inputs,
        outputs or None,
        message.id or None,
        binary_output=True,
        parameters=_parameters(message.parameters, "the request"),
    )


def infer_response(response_class: Any, result: Any) -> Any:
    """The data plane's :class:`InferResult` as a ``ModelInferResponse``."""
    response = response_class(
        model_name=result.model_name, model_version=result.model_version, id=result.id or ""
    )
    for out in result.outputs:
        response.outputs.add(
            name=out.name, datatype=_oip_datatype(out.array.dtype.name), shape=out.array.shape
        )
        response.raw_output_contents.append(tensor_bytes(out.array))
    return response
