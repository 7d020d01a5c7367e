"""[onnx]: the wire reader survives truncated, garbage, deeply nested and huge models.

Any malformed model is one ``FormatError`` naming ``[onnx]`` — never an IndexError, a
RecursionError or a hang — and the walk is linear in the model's size.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import pytest
from bundle_attack_tools import MODEL, leak_bundle, leak_model, model_bytes, put, value
from onnx import helper

from labkit.bundle import verify
from labkit.bundle.graph_check import MAX_DEPTH, check_no_external_data
from labkit.errors import BundleError, FormatError


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def test_every_truncation_is_refused_cleanly() -> None:
    data = leak_model()
    refused = 0
    for cut in range(len(data)):
        try:
            check_no_external_data(data[:cut], MODEL)
        except FormatError as exc:
            assert exc.rule == "onnx" and "\n" not in str(exc)
            refused += 1
    # Most prefixes end inside a field; those that end between fields are shorter models.
    assert refused > len(data) // 2


def test_random_garbage_is_refused_cleanly() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        with pytest.raises(FormatError) as info:
            check_no_external_data(blob, MODEL)
        assert info.value.rule == "onnx"


@pytest.mark.parametrize(
    "blob,words",
    [
        (_varint(7 << 3 | 2) + _varint(1 << 40), "claims"),  # length past the end
        (_varint(7 << 3 | 0) + _varint(5), "wire type 0"),  # graph as a number
        (_varint(7 << 3 | 3), "wire type 3"),  # a group
        (_varint(7 << 3 | 2) + b"\xff" * 11, "longer than 10 bytes"),  # endless varint
        (_ld(7, b"") + _ld(7, b""), "more than one main graph"),
        (_ld(2, b"producer"), "no graph"),
    ],
)
def test_malformed_structures_name_the_problem(blob: bytes, words: str) -> None:
    with pytest.raises(FormatError) as info:
        check_no_external_data(blob, MODEL)
    assert info.value.rule == "onnx" and words in str(info.value)


def test_deep_nesting_is_bounded() -> None:
    """graph > node > attribute > graph … 5,000 levels: refused at MAX_DEPTH, no recursion."""
    inner = b""
    for _ in range(5000):
        inner = _ld(1, _ld(5, _ld(6, inner)))  # graph.node > node.attribute > attribute.g
    with pytest.raises(FormatError) as info:
        check_no_external_data(_ld(7, inner), MODEL)
    assert info.value.rule == "onnx" and f"more than {MAX_DEPTH} deep" in str(info.value)


def test_garbage_model_in_a_bundle_is_refused_by_verify(tmp_path: Path) -> None:
    bundle = leak_bundle(tmp_path / "store")
    put(bundle, MODEL, leak_model()[:-7])
    with pytest.raises(BundleError) as info:
        verify(bundle)
    assert info.value.rule == "onnx"


def _chain(n: int) -> bytes:
    nodes = [helper.make_node("Identity", [f"v{i}"], [f"v{i + 1}"], name=f"n{i}") for i in range(n)]
    nodes[0].input[0] = "x"
    nodes[-1].output[0] = "y"
    return model_bytes(helper.make_graph(nodes, "chain", [value("x")], [value("y")]))


def test_walk_time_is_linear_in_model_size() -> None:
    """4× the nodes costs about 4× the time (medians of interleaved runs), not 16×."""
    small, large = _chain(2000), _chain(8000)
    times: dict[int, list[float]] = {len(small): [], len(large): []}
    for _ in range(5):
        for blob in (small, large):
            start = time.perf_counter()
            check_no_external_data(blob, MODEL)
            times[len(blob)].append(time.perf_counter() - start)
    ratio = statistics.median(times[len(large)]) / statistics.median(times[len(small)])
    size_ratio = len(large) / len(small)
    assert ratio < 2 * size_ratio, (ratio, size_ratio)


def test_ort_format_model_is_refused_by_both_layers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain ORT takes ORT-format (flatbuffer) bytes the wire reader cannot see into; both
    the wire check and the session's forced ONNX format refuse them."""
    import onnxruntime as ort

    import labkit.runtime.session as session_mod
    from labkit.runtime.session import make_session

    path = tmp_path / "m.ort"
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(path)
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(leak_model(), opts, providers=["CPUExecutionProvider"])
    blob = path.read_bytes()
    assert blob[4:8] == b"ORTM"
    plain = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    assert [i.name for i in plain.get_inputs()] == ["x"]  # ORT alone would run it
    with pytest.raises(FormatError) as info:
        make_session(blob)
    assert info.value.rule == "onnx"
    monkeypatch.setattr(session_mod, "check_no_external_data", lambda *a, **k: None)
    with pytest.raises(Exception, match="(?i)protobuf"):
        make_session(blob)


def test_field_count_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tensor padded with unpacked numbers (5 bytes a field) cannot make the walk take
    minutes: past MAX_FIELDS the model is refused."""
    import onnx

    import labkit.bundle.graph_check as graph_check

    monkeypatch.setattr(graph_check, "MAX_FIELDS", 10_000)
    padded = _ld(8, b"big") + (_varint(4 << 3 | 5) + b"\0\0\0\0") * 20_000  # float_data
    m = onnx.load_from_string(leak_model())
    graph = m.graph.SerializeToString()
    m.ClearField("graph")
    blob = m.SerializeToString() + _ld(7, graph + _ld(5, padded))
    with pytest.raises(FormatError) as info:
        check_no_external_data(blob, MODEL)
    assert info.value.rule == "onnx" and "more than 10000 protobuf fields" in str(info.value)
    check_no_external_data(leak_model(), MODEL)  # an ordinary model is far below it
