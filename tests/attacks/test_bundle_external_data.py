"""[external-data]: a bundle whose model names a file on the server's disk is refused.

Each test builds the hostile bundle, shows that plain ONNX Runtime really returns the
secret file's bytes for it (so the test fails if the check goes), then shows that verify,
``handoff verify``, ``labkit.runtime.load`` and ``make_session`` refuse it before any session
exists, whatever the working directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from bundle_attack_tools import (
    MODEL,
    SECRET,
    cwd,
    embedded_w,
    external_w,
    leak_bundle,
    leak_model,
    model_bytes,
    ort_leaks,
    put,
    value,
)
from onnx import TensorProto, helper

import labkit.runtime.model as runtime_model
import labkit.runtime.session as session_mod
from handoff.cli import main
from labkit.bundle import onnx_wire as w
from labkit.bundle import verify
from labkit.errors import BundleError
from labkit.runtime import load
from labkit.runtime.session import make_session


@pytest.fixture()
def secret_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(SECRET)
    return folder


@pytest.fixture()
def no_session(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    made: list[bytes] = []

    def forbidden(model: bytes, *_: Any, **__: Any) -> None:
        made.append(model)
        raise AssertionError("an ONNX Runtime session was created for a refused bundle")

    monkeypatch.setattr(runtime_model, "make_session", forbidden)
    return made


def assert_refused_everywhere(
    bundle: Path,
    secret_dir: Path,
    no_session: list[bytes],
    capsys: pytest.CaptureFixture[str],
    rule: str = "external-data",
) -> str:
    """verify, load, ``handoff verify`` and make_session refuse, from two working dirs."""
    messages = []
    for where in (secret_dir, bundle, Path("/")):
        with cwd(where):
            for attempt in (verify, load):
                with pytest.raises(BundleError) as info:
                    attempt(bundle)
                assert info.value.rule == rule, str(info.value)
                messages.append(str(info.value))
            assert main(["verify", str(bundle)]) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"[{rule}]" in err and "Traceback" not in err, err
            with pytest.raises(BundleError) as info:
                make_session((bundle / MODEL).read_bytes())
            assert info.value.rule == rule
    assert no_session == []
    assert SECRET.decode() not in "".join(messages)
    return messages[0]


def test_wire_field_numbers_are_onnx_protos() -> None:
    """Every field number the reader relies on, checked against onnx's own descriptors."""
    checks = [
        (onnx.ModelProto, w.ModelField),
        (onnx.TrainingInfoProto, w.TrainingInfoField),
        (onnx.GraphProto, w.GraphField),
        (onnx.NodeProto, w.NodeField),
        (onnx.FunctionProto, w.FunctionField),
        (onnx.AttributeProto, w.AttributeField),
        (onnx.TensorProto, w.TensorField),
        (onnx.SparseTensorProto, w.SparseTensorField),
        (onnx.StringStringEntryProto, w.EntryField),
        (onnx.ValueInfoProto, w.ValueInfoField),
        (onnx.TypeProto, w.TypeField),
        (onnx.TypeProto.Tensor, w.TensorTypeField),
        (onnx.TensorShapeProto, w.ShapeField),
        (onnx.TensorShapeProto.Dimension, w.DimField),
    ]
    seen = 0
    for proto, table in checks:
        for attr, number in vars(table).items():
            if attr.isupper():
                assert proto.DESCRIPTOR.fields_by_name[attr.lower()].number == number, (
                    proto.__name__,
                    attr,
                )
                seen += 1
    assert seen >= 30
    assert onnx.TensorProto.EXTERNAL == 1 and onnx.TensorProto.DEFAULT == 0


def test_benign_leak_bundle_loads_and_runs(tmp_path: Path) -> None:
    """The tool bundle is valid: the refusals below come from the rule, nothing else."""
    model = load(leak_bundle(tmp_path / "store"))
    y = model.predict(np.zeros((1, 16), np.uint8))["y"]
    assert bytes(y.tobytes()) == bytes(range(16))
    assert model.self_test().ok


@pytest.mark.parametrize("location", ["secret.txt", "../secrets/secret.txt"])
def test_external_initializer(tmp_path, secret_dir, no_session, capsys, location):
    bundle = leak_bundle(tmp_path / "store")
    hostile = leak_model(external_w(location))
    assert ort_leaks(hostile, secret_dir) == SECRET  # the attack is real
    put(bundle, MODEL, hostile)
    message = assert_refused_everywhere(bundle, secret_dir, no_session, capsys)
    assert "initializer 'w'" in message and repr(location) in message


def _constant(tensor: TensorProto, attr: str = "value") -> onnx.NodeProto:
    node = helper.make_node("Constant", [], ["w"], name="c")
    if attr == "value":
        node.attribute.append(helper.make_attribute("value", tensor))
    else:  # sparse_value
        sparse = helper.make_sparse_tensor(
            tensor, helper.make_tensor("i", TensorProto.INT64, [16], list(range(16))), [16]
        )
        node.attribute.append(helper.make_attribute("sparse_value", sparse))
    return node


def _graph(
    nodes: list[onnx.NodeProto], inits: list[TensorProto] | None = None, **kw: Any
) -> onnx.GraphProto:
    return helper.make_graph(
        [*nodes, helper.make_node("Add", ["x", "w"], ["y"])],
        "leak",
        [value("x")],
        [value("y")],
        inits or [],
        **kw,
    )


def test_external_tensor_in_constant_node(tmp_path, secret_dir, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    hostile = model_bytes(_graph([_constant(external_w())]))
    assert ort_leaks(hostile, secret_dir) == SECRET
    put(bundle, MODEL, hostile)
    message = assert_refused_everywhere(bundle, secret_dir, no_session, capsys)
    assert "node 'c' (Constant) > attribute 'value'" in message


def test_external_values_in_constant_sparse_value(tmp_path, secret_dir, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    hostile = model_bytes(_graph([_constant(external_w(name="v"), "sparse_value")]))
    assert ort_leaks(hostile, secret_dir) == SECRET
    put(bundle, MODEL, hostile)
    message = assert_refused_everywhere(bundle, secret_dir, no_session, capsys)
    assert "sparse tensor > values 'v'" in message


def test_external_initializer_inside_if_subgraph(tmp_path, secret_dir, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    branch_out = [helper.make_tensor_value_info("wb", TensorProto.UINT8, [16])]
    then = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["wb"])], "then", [], branch_out, [external_w()]
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["w0"], ["wb"])],
        "else",
        [],
        branch_out,
        [helper.make_tensor("w0", TensorProto.UINT8, [16], bytes(16), raw=True)],
    )
    cond = helper.make_node(
        "Constant", [], ["cond"], value=helper.make_tensor("t", TensorProto.BOOL, [], [True])
    )
    node = helper.make_node(
        "If", ["cond"], ["w"], name="branch", then_branch=then, else_branch=other
    )
    hostile = model_bytes(_graph([cond, node]))
    assert ort_leaks(hostile, secret_dir) == SECRET
    put(bundle, MODEL, hostile)
    message = assert_refused_everywhere(bundle, secret_dir, no_session, capsys)
    assert "node 'branch' (If) > attribute 'then_branch' > subgraph 'then' > initializer" in message


def test_external_tensor_in_function_body(tmp_path, secret_dir, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    fn = helper.make_function(
        "leak.fn", "Leak", [], ["out"], [_constant(external_w())], [helper.make_opsetid("", 17)]
    )
    fn.node[0].output[0] = "out"
    call = helper.make_node("Leak", [], ["w"], domain="leak.fn", name="call")
    hostile = model_bytes(
        _graph([call]),
        functions=[fn],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("leak.fn", 1)],
    )
    assert ort_leaks(hostile, secret_dir) == SECRET
    put(bundle, MODEL, hostile)
    message = assert_refused_everywhere(bundle, secret_dir, no_session, capsys)
    assert "function 'Leak' > node 'c' (Constant)" in message


def test_external_values_in_sparse_initializer(tmp_path, secret_dir, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    sparse = helper.make_sparse_tensor(
        external_w(name="w"),
        helper.make_tensor("w_idx", TensorProto.INT64, [16], list(range(16))),
        [16],
    )
    g = _graph([])
    g.sparse_initializer.append(sparse)
    hostile = model_bytes(g)
    assert ort_leaks(hostile, secret_dir) == SECRET
    put(bundle, MODEL, hostile)
    message = assert_refused_everywhere(bundle, secret_dir, no_session, capsys)
    assert "sparse initializer > values 'w'" in message


def _flag_only(tensor: TensorProto) -> TensorProto:
    tensor.ClearField("external_data")
    return tensor


def _entries_only(tensor: TensorProto) -> TensorProto:
    tensor.data_location = TensorProto.DEFAULT
    tensor.raw_data = bytes(16)
    return tensor


@pytest.mark.parametrize("make", [_flag_only, _entries_only], ids=["flag", "entries"])
def test_either_marker_alone_is_refused(
    tmp_path, secret_dir, no_session, capsys, make: Callable[[TensorProto], TensorProto]
):
    """data_location=EXTERNAL without entries, or entries without the flag: both refused."""
    bundle = leak_bundle(tmp_path / "store")
    put(bundle, MODEL, leak_model(make(external_w())))
    assert_refused_everywhere(bundle, secret_dir, no_session, capsys)


def test_external_tensor_in_training_info(tmp_path, secret_dir, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    m = onnx.load_from_string(leak_model())
    info = m.training_info.add()
    info.initialization.CopyFrom(helper.make_graph([], "init", [], [], [external_w()]))
    put(bundle, MODEL, m.SerializeToString())
    message = assert_refused_everywhere(bundle, secret_dir, no_session, capsys)
    assert "training info > initialization graph 'init' > initializer 'w'" in message


def test_writer_refuses_to_write_external_data(tmp_path: Path) -> None:
    """The writer verifies its staging copy: such a bundle is never written at all."""
    from bundle_attack_tools import LEAK_IN, LEAK_OUT, manifest_for, npz

    from labkit.bundle.writer import write_bundle

    hostile = leak_model(external_w())
    x = np.zeros((1, 16), np.uint8)
    with pytest.raises(BundleError) as info:
        write_bundle(
            tmp_path / "store",
            "leak",
            "1.0.0",
            {MODEL: hostile, "golden/inputs.npz": npz(x=x), "golden/expected.npz": npz(y=x)},
            manifest_for(LEAK_IN, LEAK_OUT, hostile),
        )
    assert info.value.rule == "external-data"
    assert not (tmp_path / "store" / "leak").exists()


@pytest.mark.parametrize("location", ["secret.txt", "../secrets/secret.txt"])
def test_session_second_layer_confines_external_data(monkeypatch, secret_dir, location):
    """With the wire check switched off, ONNX Runtime itself still reads nothing: its
    external-data folder is an empty private directory."""
    monkeypatch.setattr(session_mod, "check_no_external_data", lambda *a, **k: None)
    hostile = leak_model(external_w(location))
    assert ort_leaks(hostile, secret_dir) == SECRET
    with cwd(secret_dir), pytest.raises(Exception) as info:
        make_session(hostile)
    assert "External data path" in str(info.value)
    assert SECRET.decode() not in str(info.value)


def test_embedded_models_still_load_through_make_session(secret_dir: Path) -> None:
    with cwd(secret_dir):
        session = make_session(leak_model(embedded_w()))
        y = session.run(["y"], {"x": np.zeros((1, 16), np.uint8)})[0]
    assert bytes(y.tobytes()) == bytes(range(16))
