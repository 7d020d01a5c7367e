"""Unit tests of the numeric fast path (JSON tensor data decoded straight into NumPy), the
strict loader's number rules, non-finite outputs, and the front door's small pieces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labkit.serve.admission import Admission, Limits
from labkit.serve.app import ROUTES
from labkit.serve.auth import authorization_ok as _authorization_ok
from labkit.serve.codec import decode_json_data, encode_response, parse_request
from labkit.serve.config import ServeConfig
from labkit.serve.errors import BadRequest, PayloadTooLarge, ServeError
from labkit.serve.frontdoor import FrontDoor
from labkit.serve.jsondata import NumericData
from labkit.serve.metrics import Metrics


@pytest.fixture(params=["numpy", "lists"], autouse=True)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both paths: numbers decoded into NumPy (big bodies) and through
    Python's json (small bodies); the rules and the answers must be the same."""
    import labkit.serve.codec as codec

    monkeypatch.setattr(codec, "NUMPY_NUMBERS_FROM", 0 if request.param == "numpy" else 1 << 40)
    return str(request.param)


def _parse(raw: bytes, **kw: object) -> object:
    import labkit.serve.codec as codec

    return parse_request(
        raw,
        None,
        max_depth=100,  # type: ignore[arg-type]
        numpy_numbers_from=codec.NUMPY_NUMBERS_FROM,
        **kw,
    )


def _decode(body: bytes | str, **kw: object) -> np.ndarray:
    raw = body.encode() if isinstance(body, str) else body
    req = _parse(raw, **kw)
    item = req.inputs[0]
    return decode_json_data(item.data, item.datatype, item.shape, item.name)


def _doc(data: str, shape: list[int], datatype: str = "FP32") -> str:
    return (
        f'{{"inputs": [{{"name": "x", "shape": {json.dumps(shape)}, '
        f'"datatype": "{datatype}", "data": {data}}}]}}'
    )


def test_numeric_arrays_take_the_fast_path_and_match_json(path: str) -> None:
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": x.tolist()}]}
    )
    req = _parse(body.encode())
    assert isinstance(req.inputs[0].data, NumericData) == (path == "numpy")  # type: ignore[attr-defined]
    np.testing.assert_array_equal(_decode(body), x)
    flat = _doc(json.dumps(x.ravel().tolist()), [3, 4])
    np.testing.assert_array_equal(_decode(flat), x)


def test_big_arrays_across_chunk_boundaries_are_exact() -> None:
    n = 300_000  # several 256 KiB chunks of text
    ints = np.arange(-n // 2, n // 2, dtype=np.int64) * 7919
    got = _decode(_doc(json.dumps(ints.tolist()), [n], "INT64"))
    np.testing.assert_array_equal(got, ints)
    floats = np.random.default_rng(1).normal(size=(n // 4, 4)).astype(np.float64)
    got = _decode(_doc(json.dumps(floats.tolist()), [n // 4, 4], "FP64"))
    np.testing.assert_array_equal(got, floats)  # repr round-trips float64 exactly


@pytest.mark.parametrize(
    "data",
    [
        "[1,,2]",
        "[1,2,]",
        "[,1]",
        "[01]",
        "[+1]",
        "[.5]",
        "[1.]",
        "[1e]",
        "[--1]",
        "[1e+]",
        "[-]",
        "[[1,2]3]",
        "[1 2]",
        "[1e5.5]",
    ],
)
def test_number_grammar_is_strict(data: str) -> None:
    with pytest.raises(BadRequest):
        _decode(_doc(data, [data.count(",") + 1]))


@pytest.mark.parametrize(
    ("data", "datatype", "shape", "match"),
    [
        ("[NaN]", "FP32", [1], "NaN"),
        ("[Infinity]", "FP32", [1], "Infinity"),
        ("[1e999]", "FP64", [1], "overflow"),
        ("[1e39]", "FP32", [1], "overflow FP32"),
        ("[" + "9" * 5000 + "]", "INT64", [1], "out of range|5000 digits"),
        ("[" + "9" * 5000 + "]", "FP32", [1], "overflow|5000 digits"),
        ("[9223372036854775808]", "INT64", [1], "out of range"),
        ("[-1]", "UINT64", [1], "out of range"),
        ("[256]", "UINT8", [1], "out of range"),
        ("[1.5]", "INT32", [1], "float64 values"),
        ("[1]", "BOOL", [1], "int64 values"),
        ("[[1,2],[3]]", "FP32", [3], "regular"),
        ("[[1,2],[3,4]]", "FP32", [4], "nested as shape"),
        ("[1,2]", "FP32", [3], "2 elements"),
    ],
)
def test_numeric_refusals(data: str, datatype: str, shape: list[int], match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        _decode(_doc(data, shape, datatype))


def test_exact_integers_at_the_edges() -> None:
    edges = [2**63 - 1, -(2**63)]
    assert _decode(_doc(json.dumps(edges), [2], "INT64")).tolist() == edges
    assert _decode(_doc(json.dumps([2**64 - 1, 0]), [2], "UINT64")).tolist() == [2**64 - 1, 0]
    assert _decode(_doc("[[],[]]", [2, 0])).shape == (2, 0)


def test_data_keys_inside_strings_or_elsewhere_are_not_cut_out() -> None:
    # a "data" key quoted inside a string, and one under outputs: neither is an input's data
    body = (
        '{"id": "\\"data\\": [1, 2]", "inputs": [{"name": "x", "shape": [2], '
        '"datatype": "INT32", "data": [1, 2]}]}'
    )
    req = _parse(body.encode())
    assert req.id == '"data": [1, 2]'  # type: ignore[attr-defined]
    with pytest.raises(BadRequest, match="unknown field"):
        _parse(
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", '
            b'"data": [1]}], "outputs": [{"name": "y", "data": [1]}]}'
        )
    # a client cannot forge the placeholder of a cut-out array
    forged = _doc('"@labkit-data-00000000000000000000000000000000-0"', [1])
    with pytest.raises(BadRequest, match="must be a list"):
        _decode(forged)


def test_json_outside_tensor_data_is_capped(path: str) -> None:
    if path == "lists":
        pytest.skip("small bodies are not split; the cap is for what stays in the document")
    body = _doc(json.dumps(["s"] * 1000), [1000], "BYTES")
    with pytest.raises(PayloadTooLarge, match="binary extension"):
        _parse(body.encode(), max_document=1000)
    big_numbers = _doc(json.dumps(list(range(1000))), [1000], "INT64")
    assert _decode(big_numbers, max_document=1000).sum() == sum(range(1000))


def test_non_finite_json_outputs_are_refused_binary_ones_sent() -> None:
    y = np.array([[1.0, np.nan]], np.float32)
    with pytest.raises(ServeError, match="binary_data") as info:
        encode_response("m", "1", [("y", y, False)], request_id=None)
    assert info.value.status == 422
    body, headers = encode_response("m", "1", [("y", y, True)], request_id=None)
    n = int(headers["inference-header-content-length"])
    assert np.isnan(np.frombuffer(body[n:], "<f4")[1])


def test_large_json_outputs_round_trip() -> None:
    y = np.random.default_rng(2).normal(size=(70_000, 3)).astype(np.float32)
    body, _ = encode_response("m", "1", [("y", y, False), ("z", y[:1], False)], request_id="r")
    doc = json.loads(body)
    assert doc["id"] == "r" and [o["name"] for o in doc["outputs"]] == ["y", "z"]
    np.testing.assert_array_equal(np.array(doc["outputs"][0]["data"], np.float32), y.ravel())


def test_bearer_scheme_rules() -> None:
    assert _authorization_ok(b"Bearer tok-123456", b"tok-123456")
    assert _authorization_ok(b"bEARER tok-123456", b"tok-123456")
    assert not _authorization_ok(b"Bearer tok-1234567", b"tok-123456")
    assert not _authorization_ok(b"Basic tok-123456", b"tok-123456")
    assert not _authorization_ok(b"tok-123456", b"tok-123456")


def test_front_door_labels_come_from_the_route_table() -> None:
    metrics = Metrics()
    door = FrontDoor(
        lambda *a: None,
        token=None,
        metrics=metrics,
        routes=ROUTES,  # type: ignore[arg-type, return-value]
        admission=Admission(Limits(1, 1, 1, 1.0, 1), metrics),
    )
    assert door.route_of("/v2/models/m/versions/1.0.0/infer") == "infer"
    assert door.route_of("/v2/models/m/ready") == "model_ready"
    assert door.route_of("/v2/models/m") == "model_metadata"
    assert door.route_of("/v2/health/ready") == "/v2/health/ready"
    assert door.route_of("/v2/models/m/infer/extra") == "other"
    assert {r.name for r in ROUTES} >= {"infer", "model_ready", "model_metadata", "/metrics"}


@pytest.mark.parametrize("field", ["header_timeout_s", "body_timeout_s", "keepalive_timeout_s"])
def test_timeouts_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ServeConfig(**{field: 0})
    with pytest.raises(ValueError, match="max_body_budget_bytes"):
        ServeConfig(max_body_bytes=100, max_body_budget_bytes=99)
