"""Unit tests of the wire codec: datatypes, depth scan, JSON/binary tensors, responses."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from labkit.serve.codec import (
    OIP_TO_NUMPY,
    check_json_depth,
    decode_binary,
    decode_json_data,
    encode_response,
    oip_datatype,
    parse_request,
)
from labkit.serve.errors import BadRequest


@pytest.mark.parametrize(
    ("numpy_name", "oip"),
    [
        ("float32", "FP32"),
        ("float64", "FP64"),
        ("float16", "FP16"),
        ("int64", "INT64"),
        ("int32", "INT32"),
        ("int8", "INT8"),
        ("uint8", "UINT8"),
        ("uint64", "UINT64"),
        ("bool", "BOOL"),
        ("object", "BYTES"),
    ],
)
def test_datatype_names(numpy_name: str, oip: str) -> None:
    assert oip_datatype(numpy_name) == oip
    if oip != "BYTES":
        assert OIP_TO_NUMPY[oip] == np.dtype(numpy_name)


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="complex64"):
        oip_datatype("complex64")


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ('{"a": [[1]]}', 3),
        ('"[[[[[["', 0),
        ('{"a": "\\"[[[[["}', 1),
        ('["\\\\", [[1]]]', 3),
        ('[{"x": "]]]]"}, [[[]]]]', 4),
        ("[]", 1),
        ("", 0),
    ],
)
def test_depth_scan_ignores_strings_and_escapes(text: str, depth: int) -> None:
    check_json_depth(text.encode(), depth)
    if depth:
        with pytest.raises(BadRequest, match="nesting"):
            check_json_depth(text.encode(), depth - 1)


def test_depth_scan_across_chunk_boundaries() -> None:
    # a string full of brackets that straddles the 1 MiB chunk edge, then real nesting
    filler = "a" * ((1 << 20) - 7)
    text = '["' + filler + '\\\\", "[[[[[[[[[[", [[[1]]]]'
    check_json_depth(text.encode(), 4)
    with pytest.raises(BadRequest):
        check_json_depth(text.encode(), 3)
    escaped_quote = '["' + "b" * ((1 << 20) - 3) + '\\"[[[[[[", 1]'
    check_json_depth(escaped_quote.encode(), 1)


def test_json_data_flat_and_nested() -> None:
    flat = decode_json_data([1, 2, 3, 4.5, 5, 6], "FP32", (2, 3), "x")
    nested = decode_json_data([[1, 2, 3], [4.5, 5, 6]], "FP32", (2, 3), "x")
    np.testing.assert_array_equal(flat, nested)
    assert flat.dtype == np.float32 and flat.shape == (2, 3)
    ints = decode_json_data([1, -2], "INT64", (2,), "i")
    assert ints.dtype == np.int64 and ints.tolist() == [1, -2]
    assert decode_json_data([True, False], "BOOL", (2,), "b").tolist() == [True, False]
    assert decode_json_data(["hé"], "BYTES", (1,), "s").tolist() == ["hé".encode()]


@pytest.mark.parametrize(
    ("data", "datatype", "shape", "match"),
    [
        ([1.5], "INT64", (1,), "float64"),
        ([1], "BOOL", (1,), "int64"),
        ([300], "UINT8", (1,), "out of range"),
        ([-1], "UINT32", (1,), "out of range"),
        ([1e10], "FP16", (1,), "overflow"),
        ([1, 2], "FP32", (3,), "2 elements"),
        ("1,2", "FP32", (2,), "must be a list"),
        ([[1], [2, 3]], "FP32", (3,), "regular"),
        ([1], "BYTES", (1,), "strings"),
    ],
)
def test_json_data_refusals(
    data: object, datatype: str, shape: tuple[int, ...], match: str
) -> None:
    with pytest.raises(BadRequest, match=match):
        decode_json_data(data, datatype, shape, "x")


def test_binary_tensors() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(decode_binary(x.tobytes(), "FP32", (2, 3), "x"), x)
    with pytest.raises(BadRequest, match="needs 24"):
        decode_binary(x.tobytes()[:-1], "FP32", (2, 3), "x")
    assert decode_binary(b"\x01\x00", "BOOL", (2,), "b").tolist() == [True, False]
    with pytest.raises(BadRequest, match="0 or 1"):
        decode_binary(b"\x02", "BOOL", (1,), "b")
    raw = struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)
    assert decode_binary(raw, "BYTES", (2,), "s").tolist() == [b"ab", b""]
    with pytest.raises(BadRequest, match="runs past"):
        decode_binary(struct.pack("<I", 9) + b"ab", "BYTES", (1,), "s")


def test_parse_binary_request_splits_inputs_in_order() -> None:
    a = np.ones((1, 2), np.float32)
    b = np.array([[7]], np.int64)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "a",
                    "shape": [1, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": a.nbytes},
                },
                {
                    "name": "b",
                    "shape": [1, 1],
                    "datatype": "INT64",
                    "parameters": {"binary_data_size": b.nbytes},
                },
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
            "parameters": {"binary_data_output": False},
            "id": "q",
        }
    ).encode()
    req = parse_request(header + a.tobytes() + b.tobytes(), str(len(header)), max_depth=10)
    assert [i.name for i in req.inputs] == ["a", "b"] and req.id == "q"
    assert req.inputs[0].binary == a.tobytes() and req.inputs[1].binary == b.tobytes()
    assert req.outputs is not None and [(o.name, o.binary) for o in req.outputs] == [
        ("y", True),
        ("z", None),
    ]


def test_encode_response_json_and_binary() -> None:
    y = np.array([[0.1, -2.0]], np.float32)
    body, headers = encode_response("m", "1.0.0", [("y", y, False)], request_id=None)
    doc = json.loads(body)
    assert headers == {"content-type": "application/json"}
    assert doc == {
        "model_name": "m",
        "model_version": "1.0.0",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [float(y[0, 0]), -2.0]}
        ],
    }
    assert np.float32(doc["outputs"][0]["data"][0]) == y[0, 0]  # exact round trip
    body, headers = encode_response("m", "1.0.0", [("y", y, True), ("z", y, False)], request_id="r")
    n = int(headers["inference-header-content-length"])
    doc = json.loads(body[:n])
    assert doc["id"] == "r" and doc["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert "data" not in doc["outputs"][0] and "data" in doc["outputs"][1]
    np.testing.assert_array_equal(np.frombuffer(body[n:], "<f4").reshape(1, 2), y)
