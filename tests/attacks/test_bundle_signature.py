"""[signature]: a manifest signature that is not the graph's is refused at verify/load.

Without the rule these bundles fail later, as raw ONNX Runtime errors in the self-test or at
the first request; each test shows that failure on the plain session first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from bundle_attack_tools import MODEL, embedded_w, leak_bundle, model_bytes, put, reseal, value
from onnx import TensorProto, helper

import labkit.runtime.model as runtime_model
from handoff.cli import main
from labkit.bundle import verify
from labkit.errors import BundleError
from labkit.runtime import load


@pytest.fixture()
def no_session(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    made: list[bytes] = []

    def forbidden(model: bytes, *_: Any, **__: Any) -> None:
        made.append(model)
        raise AssertionError("an ONNX Runtime session was created for a refused bundle")

    monkeypatch.setattr(runtime_model, "make_session", forbidden)
    return made


def graph_model(x: Any = None, y: Any = None, extra_inputs: tuple[Any, ...] = ()) -> bytes:
    """``y = x + w``; ``x``/``y`` ValueInfos may be replaced to disagree with the manifest."""
    nodes = [helper.make_node("Add", ["x", "w"], ["y"])]
    return model_bytes(
        helper.make_graph(
            nodes, "leak", [x or value("x"), *extra_inputs], [y or value("y")], [embedded_w()]
        )
    )


def refused(bundle: Path, no_session: list[bytes], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(BundleError) as info:
        verify(bundle)
    assert info.value.rule == "signature", str(info.value)
    with pytest.raises(BundleError) as again:
        load(bundle)
    assert again.value.rule == "signature"
    assert no_session == []
    assert main(["verify", str(bundle)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[signature]" in err and "Traceback" not in err, err
    return str(info.value)


def test_input_name_differs(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    model = model_bytes(
        helper.make_graph(
            [helper.make_node("Add", ["input", "w"], ["y"])],
            "leak",
            [value("input")],
            [value("y")],
            [embedded_w()],
        )
    )
    with pytest.raises(Exception, match="input"):  # without the rule: a raw ORT error
        ort.InferenceSession(model).run(None, {"x": np.zeros((1, 16), np.uint8)})
    put(bundle, MODEL, model)
    message = refused(bundle, no_session, capsys)
    assert "['input']" in message and "['x']" in message


def test_output_name_differs(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    model = model_bytes(
        helper.make_graph(
            [helper.make_node("Add", ["x", "w"], ["z"])],
            "leak",
            [value("x")],
            [value("z")],
            [embedded_w()],
        )
    )
    with pytest.raises(Exception, match="y"):
        ort.InferenceSession(model).run(["y"], {"x": np.zeros((1, 16), np.uint8)})
    put(bundle, MODEL, model)
    assert "outputs are ['z']" in refused(bundle, no_session, capsys)


def test_extra_graph_input(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    put(bundle, MODEL, graph_model(extra_inputs=(value("unused"),)))
    assert "['unused', 'x']" in refused(bundle, no_session, capsys)


def test_dtype_differs(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    w = helper.make_tensor("w", TensorProto.FLOAT, [16], [0.0] * 16)
    model = model_bytes(
        helper.make_graph(
            [helper.make_node("Add", ["x", "w"], ["y"])],
            "leak",
            [value("x", TensorProto.FLOAT)],
            [value("y", TensorProto.FLOAT)],
            [w],
        )
    )
    with pytest.raises(Exception, match="(?i)type"):
        ort.InferenceSession(model).run(None, {"x": np.zeros((1, 16), np.uint8)})
    put(bundle, MODEL, model)
    assert "input 'x' is float32 in the graph, uint8 in the manifest" in refused(
        bundle, no_session, capsys
    )


def test_rank_differs(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    put(
        bundle,
        MODEL,
        graph_model(x=value("x", shape=["batch", 1, 16]), y=value("y", shape=["batch", 1, 16])),
    )
    assert "input 'x' has rank 3 in the graph" in refused(bundle, no_session, capsys)


def test_fixed_graph_dim_where_manifest_is_symbolic(tmp_path, no_session, capsys):
    """A graph exported with a fixed batch of 4 would refuse every 1-row request."""
    bundle = leak_bundle(tmp_path / "store")
    model = graph_model(x=value("x", shape=[4, 16]), y=value("y", shape=[4, 16]))
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        ort.InferenceSession(model).run(None, {"x": np.zeros((1, 16), np.uint8)})
    put(bundle, MODEL, model)
    assert "axis 0 is fixed at 4 in the graph, the manifest says 'batch'" in refused(
        bundle, no_session, capsys
    )


def test_fixed_dims_that_differ(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    reseal(
        bundle,
        lambda m: [
            m["signature"][side][0].__setitem__("shape", ["batch", 8])
            for side in ("inputs", "outputs")
        ],
    )
    assert "axis 1 is fixed at 16 in the graph, the manifest says 8" in refused(
        bundle, no_session, capsys
    )


def test_symbolic_graph_dims_accept_other_names_and_fixed_manifest_dims(tmp_path):
    """Documented leniency: a symbolic graph dim may be any name, or fixed, in the manifest
    (the runtime enforces the manifest's dims, which are then at least as strict)."""
    bundle = leak_bundle(tmp_path / "store")
    put(bundle, MODEL, graph_model(x=value("x", shape=["N", 16]), y=value("y", shape=[None, 16])))  # type: ignore[list-item]
    reseal(bundle, lambda m: m["signature"]["inputs"][0].__setitem__("shape", [2, 16]))
    model = load(bundle)
    assert model.self_test().ok
    assert model.inputs[0].shape == (2, 16)


def _ld(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, for byte-level splicing."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    return varint(field << 3 | 2) + varint(len(payload)) + payload


def test_input_that_is_not_a_plain_tensor(tmp_path, no_session, capsys):
    """A TypeProto carrying tensor_type *and then* sequence_type is a sequence to ONNX
    Runtime (the last member of a oneof wins), whatever its tensor_type says."""
    import onnx

    bundle = leak_bundle(tmp_path / "store")
    seq = onnx.TypeProto()
    seq.sequence_type.elem_type.tensor_type.elem_type = TensorProto.UINT8
    both = value("x").type.SerializeToString() + seq.SerializeToString()
    parsed = onnx.TypeProto()
    parsed.ParseFromString(both)
    assert parsed.WhichOneof("value") == "sequence_type"  # what protobuf (and ORT) see
    x_bytes = _ld(1, b"x") + _ld(2, both)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "leak", [], [value("y")], [embedded_w()]
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    m.ClearField("graph")
    model = m.SerializeToString() + _ld(7, graph.SerializeToString() + _ld(11, x_bytes))
    assert onnx.load_from_string(model).graph.input[0].type.WhichOneof("value") == "sequence_type"
    put(bundle, MODEL, model)
    assert "graph value 'x' is not a tensor" in refused(bundle, no_session, capsys)
