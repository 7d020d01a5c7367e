"""Open Inference Protocol v2 wire format <-> numpy, with the binary tensor extension.

Parsing is strict and cheap to refuse: the JSON nesting depth is measured on the raw bytes
before ``json`` sees them, duplicate keys are refused, and tensor sizes are checked against
the bytes actually present before anything is allocated from a client-supplied shape.
This module knows the protocol, not the model: matching a request against a signature is
:mod:`labkit.serve.validation`.
"""

from __future__ import annotations

import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labkit.serve.errors import BadRequest, PayloadTooLarge, ServeError
from labkit.serve.jsondata import NumericData, decode_numbers, extract_numeric_data
from labkit.serve.jsonguard import check_json_depth, loads_strict

__all__ = [
    "OIP_TO_NUMPY",
    "InferRequest",
    "RequestInput",
    "RequestOutput",
    "check_json_depth",
    "decode_binary",
    "decode_json_data",
    "encode_response",
    "loads_strict",
    "oip_datatype",
    "parse_request",
    "tensor_bytes",
]

OIP_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
_NUMPY_TO_OIP = {dt.name: name for name, dt in OIP_TO_NUMPY.items() if name != "BYTES"}
_NUMPY_TO_OIP.update({"object": "BYTES", "str": "BYTES", "bytes": "BYTES", "string": "BYTES"})

_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})
# JSON left once numeric tensor data is cut out (strings, booleans, the request's frame)
# goes through Python's json, whose objects cost up to ~20x the text: capped separately.
MAX_JSON_DOCUMENT = 16 << 20
# Below this size a body goes straight to the strict loader: Python lists of a 64 KiB body
# cost ~2 MiB, and the vectorised scans have a fixed cost that dominates tiny requests
NUMPY_NUMBERS_FROM = 64 << 10


def oip_datatype(numpy_name: str) -> str:
    """Map a numpy dtype name (as in a bundle signature) to the protocol's datatype name."""
    try:
        return _NUMPY_TO_OIP[np.dtype(numpy_name).name if numpy_name != "string" else "str"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"dtype {numpy_name!r} has no Open Inference Protocol datatype") from exc


@dataclass(frozen=True)
class RequestInput:
    """One input tensor as a front end received it: exactly one of ``data`` (JSON values),
    ``binary`` (raw little-endian bytes) or ``array`` (values a front end already typed,
    flat, e.g. gRPC's typed contents)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any = None  # JSON tensor data (list, or NumericData not yet decoded), when not binary
    binary: bytes | bytearray | None = None  # raw little-endian bytes, with the binary extension
    array: np.ndarray | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # those the front end left


@dataclass(frozen=True)
class RequestOutput:
    name: str
    binary: bool | None  # None: not said; falls back to the request's binary_data_output
    parameters: dict[str, Any] = field(default_factory=dict)  # those the front end left


@dataclass(frozen=True)
class InferRequest:
    """A protocol-neutral inference request. ``parameters`` (here and on inputs and
    outputs) hold only what the front end did not consume itself; the data plane refuses
    any it does not support (:func:`labkit.serve.validation.check_parameters`)."""

    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None
    id: str | None = None
    binary_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise BadRequest(message)


def _parameters(obj: Any, where: str) -> dict[str, Any]:
    if obj is None:
        return {}
    _expect(isinstance(obj, dict), f"{where}.parameters must be an object")
    for key, value in obj.items():
        _expect(
            isinstance(value, (str, int, float, bool)),
            f"{where}.parameters[{key!r}] must be a string, number or boolean",
        )
    return dict(obj)


def _shape(value: Any, where: str) -> tuple[int, ...]:
    _expect(isinstance(value, list), f"{where}.shape must be a list of integers")
    for dim in value:
        _expect(
            isinstance(dim, int) and not isinstance(dim, bool) and 0 <= dim < 2**63,
            f"{where}.shape has {dim!r}; dimensions are non-negative integers",
        )
    return tuple(value)


def _split_body(
    body: bytes | bytearray, header_length: str | None
) -> tuple[bytes | bytearray, bytes | bytearray]:
    if header_length is None:
        return body, b""
    _expect(
        header_length.isascii() and header_length.isdigit(),
        f"Inference-Header-Content-Length must be a non-negative integer, got {header_length!r}",
    )
    n = int(header_length)
    _expect(n <= len(body), f"Inference-Header-Content-Length {n} exceeds the body ({len(body)})")
    return body[:n], body[n:]


def parse_request(
    body: bytes | bytearray,
    header_length: str | None,
    *,
    max_depth: int,
    max_document: int = MAX_JSON_DOCUMENT,
    numpy_numbers_from: int = NUMPY_NUMBERS_FROM,
) -> InferRequest:
    """Parse an inference request body (JSON, or JSON header + binary tensors). Numeric
    tensor data of a JSON document of ``numpy_numbers_from`` bytes or more is decoded
    straight into NumPy (:mod:`labkit.serve.jsondata`); the same rules hold either way."""
    header, blob = _split_body(body, header_length)
    document: bytes | bytearray = header
    numeric: dict[str, NumericData] = {}
    if len(header) >= numpy_numbers_from:
        document, numeric = extract_numeric_data(header, max_depth)
    if len(document) > max_document:
        raise PayloadTooLarge(
            f"the JSON outside numeric tensor data is {len(document)} bytes, over the cap of "
            f"{max_document}; send large BYTES or BOOL tensors with the binary extension"
        )
    doc = loads_strict(document, max_depth=max_depth)
    _expect(isinstance(doc, dict), "the inference request must be a JSON object")
    unknown = sorted(set(doc) - _REQUEST_KEYS)
    _expect(not unknown, f"unknown field(s) in the inference request: {unknown}")
    req_id = doc.get("id")
    _expect(req_id is None or isinstance(req_id, str), "id must be a string")
    params = _parameters(doc.get("parameters"), "request")
    binary_output = params.pop("binary_data_output", False)
    _expect(isinstance(binary_output, bool), "binary_data_output must be a boolean")
    raw_inputs = doc.get("inputs")
    _expect(isinstance(raw_inputs, list) and len(raw_inputs) > 0, "inputs must be a non-empty list")
    inputs: list[RequestInput] = []
    offset = 0
    for i, item in enumerate(raw_inputs):
        where = f"inputs[{i}]"
        _expect(isinstance(item, dict), f"{where} must be an object")
        unknown = sorted(set(item) - _INPUT_KEYS)
        _expect(not unknown, f"unknown field(s) in {where}: {unknown}")
        name, datatype = item.get("name"), item.get("datatype")
        _expect(isinstance(name, str), f"{where}.name must be a string")
        _expect(isinstance(datatype, str), f"{where}.datatype must be a string")
        shape = _shape(item.get("shape"), where)
        p = _parameters(item.get("parameters"), where)
        size = p.pop("binary_data_size", None)
        if size is None:
            _expect("data" in item, f"input {name!r} has neither data nor binary_data_size")
            data = item["data"]
            if isinstance(data, str) and data in numeric:
                data = numeric.pop(data)
            inputs.append(RequestInput(name, datatype, shape, data=data, parameters=p))
            continue
        _expect(
            isinstance(size, int) and not isinstance(size, bool) and size >= 0,
            f"input {name!r}: binary_data_size must be a non-negative integer",
        )
        _expect("data" not in item, f"input {name!r} has both data and binary_data_size")
        _expect(offset + size <= len(blob), f"input {name!r}: binary data runs past the body")
        raw = blob[offset : offset + size]
        inputs.append(RequestInput(name, datatype, shape, binary=raw, parameters=p))
        offset += size
    _expect(offset == len(blob), f"{len(blob) - offset} bytes of binary data belong to no input")
    return InferRequest(inputs, _outputs(doc.get("outputs")), req_id, binary_output, params)


def _outputs(raw: Any) -> list[RequestOutput] | None:
    if raw is None:
        return None
    _expect(isinstance(raw, list), "outputs must be a list")
    result = []
    for i, item in enumerate(raw):
        _expect(
            isinstance(item, dict) and isinstance(item.get("name"), str),
            f"outputs[{i}] must be an object with a string name",
        )
        unknown = sorted(set(item) - _OUTPUT_KEYS)
        _expect(not unknown, f"unknown field(s) in outputs[{i}]: {unknown}")
        p = _parameters(item.get("parameters"), f"outputs[{i}]")
        binary = p.pop("binary_data", None)
        _expect(binary is None or isinstance(binary, bool), "binary_data must be a boolean")
        result.append(RequestOutput(item["name"], binary, p))
    return result


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def decode_binary(
    raw: bytes | bytearray, datatype: str, shape: tuple[int, ...], name: str
) -> np.ndarray:
    """Raw little-endian bytes -> array of ``shape``; the byte count must match exactly."""
    dtype, count = OIP_TO_NUMPY[datatype], _count(shape)
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            _expect(pos + 4 <= len(raw), f"input {name!r}: truncated BYTES length prefix")
            (length,) = struct.unpack_from("<I", raw, pos)
            _expect(pos + 4 + length <= len(raw), f"input {name!r}: BYTES element runs past data")
            items.append(raw[pos + 4 : pos + 4 + length])
            pos += 4 + length
        _expect(
            len(items) == count, f"input {name!r}: {len(items)} elements for shape {list(shape)}"
        )
        return np.array(items, dtype=object).reshape(shape)
    expected = count * dtype.itemsize
    _expect(
        len(raw) == expected,
        f"input {name!r}: {len(raw)} bytes of binary data, shape {list(shape)} of {datatype} "
        f"needs {expected}",
    )
    if datatype == "BOOL":
        as_u8 = np.frombuffer(raw, dtype=np.uint8)
        _expect(
            not as_u8.size or int(as_u8.max()) <= 1, f"input {name!r}: BOOL bytes must be 0 or 1"
        )
        return as_u8.view(np.bool_).reshape(shape)
    little = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    return little.astype(dtype, copy=False).reshape(shape)


_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def decode_json_data(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """JSON tensor data (flat or nested, row-major) -> array; no silent casts or truncation."""
    dtype = OIP_TO_NUMPY[datatype]
    if isinstance(data, NumericData):
        return decode_numbers(data, dtype, datatype, shape, name)
    _expect(isinstance(data, list), f"input {name!r}: data must be a list")
    count = _count(shape)
    if datatype == "BYTES":
        flat = np.asarray(data, dtype=object).ravel()
        _expect(
            all(isinstance(v, str) for v in flat), f"input {name!r}: BYTES data must be strings"
        )
        _expect(flat.size == count, f"input {name!r}: {flat.size} elements for shape {list(shape)}")
        return np.array([v.encode() for v in flat], dtype=object).reshape(shape)
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(
            f"input {name!r}: data is not a regular array of numbers ({exc})"
        ) from None
    if dtype.kind in "iu" and arr.dtype.kind in "fO":
        arr = _big_integers(data, arr, dtype, datatype, name)
    _expect(
        arr.dtype.kind in _ACCEPTED_KINDS[dtype.kind],
        f"input {name!r}: data holds {arr.dtype.name} values, datatype says {datatype}",
    )
    _expect(arr.size == count, f"input {name!r}: {arr.size} elements for shape {list(shape)}")
    _expect(
        arr.ndim <= 1 or arr.shape == shape,
        f"input {name!r}: data is not a regular array nested as shape {list(shape)}; "
        "send it flat or nested exactly as the shape",
    )
    if dtype.kind in "iu" and arr.size:
        info = np.iinfo(dtype)
        _expect(
            int(arr.min()) >= info.min and int(arr.max()) <= info.max,
            f"input {name!r}: values out of range for {datatype}",
        )
    with np.errstate(over="ignore"):
        out = arr.astype(dtype).reshape(shape)
    if dtype.kind == "f":
        _expect(bool(np.isfinite(out).all()), f"input {name!r}: values overflow {datatype}")
    return out


_JSON_CHUNK = 1 << 16  # elements turned into Python objects at once (bounded memory)


def _big_integers(
    data: list[Any], arr: np.ndarray, dtype: np.dtype[Any], datatype: str, name: str
) -> np.ndarray:
    """Integers beyond int64 make numpy pick float64 or object: check them exactly."""
    values = np.asarray(data, dtype=object).ravel()
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return arr  # really floats (or junk): the kind check refuses them
    info = np.iinfo(dtype)
    _expect(
        all(info.min <= v <= info.max for v in values),
        f"input {name!r}: values out of range for {datatype}",
    )
    return np.array(values.tolist(), dtype=dtype).reshape(arr.shape)


def _to_json(arr: np.ndarray) -> list[bytes]:
    """The JSON array of a tensor's values as pieces, built in chunks: a million outputs
    never exist as a million Python floats at once, and the pieces are joined only once,
    into the response body."""
    flat = arr.ravel()
    if flat.dtype == object:
        items = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
        return [json.dumps(items).encode()]
    parts = [b"["]
    for i in range(0, flat.size, _JSON_CHUNK):
        if i:
            parts.append(b",")
        parts.append(json.dumps(flat[i : i + _JSON_CHUNK].tolist(), allow_nan=False)[1:-1].encode())
    parts.append(b"]")
    return parts


def tensor_bytes(arr: np.ndarray) -> bytes:
    """A tensor as the binary extension (and gRPC raw contents) carry it: little-endian
    values, BYTES elements each after a 4-byte little-endian length."""
    if arr.dtype == object or arr.dtype.kind in "SU":
        parts = []
        for v in arr.ravel():
            b = v if isinstance(v, bytes) else str(v).encode()
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def encode_response(
    model_name: str,
    model_version: str,
    outputs: list[tuple[str, np.ndarray, bool]],
    *,
    request_id: str | None,
) -> tuple[bytes, dict[str, str]]:
    """Build the response body and headers; binary outputs follow the JSON header."""
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    tensors, blobs = [], []
    datas: dict[str, list[bytes]] = {}
    for name, arr, binary in outputs:
        entry: dict[str, Any] = {
            "name": name,
            "datatype": oip_datatype(arr.dtype.name),
            "shape": [int(d) for d in arr.shape],
        }
        if binary:
            blob = tensor_bytes(arr)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ServeError(
                    f"output {name!r} holds NaN or infinite values, which JSON cannot carry; "
                    "ask for it as binary (parameters.binary_data: true)",
                    status=422,
                )
            marker = f"@labkit-output-{secrets.token_hex(16)}"
            datas[marker] = _to_json(arr)
            entry["data"] = marker
        tensors.append(entry)
    doc["outputs"] = tensors
    header = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if datas:  # each output's data goes where its placeholder is; one join, one copy
        pieces: list[bytes] = []
        rest = header
        for marker, data in datas.items():
            before, _, rest = rest.partition(json.dumps(marker).encode())
            pieces += [before, *data]
        header = b"".join([*pieces, rest])
        del pieces, datas
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
