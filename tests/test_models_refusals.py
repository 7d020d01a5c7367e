"""Each bad ``dynamic_axes`` and each refused construct, with the exact guidance it gets.

Registration only (no export) except the signature check, which runs a hand-built graph in
a real ONNX Runtime session.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import labkit
from labkit.bundle import Exporter
from labkit.errors import InputError, RegistrationError, SignatureError
from labkit.pipeline import shapes
from labkit.runtime.engines.ort import classify
from labkit.runtime.signature import TensorSpec, engine_error


class Tagger(torch.nn.Module):
    """[b, seq, 8] → [b, seq, 5]."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 5)

    def forward(self, x):
        return self.proj(x)


def _refused(match: str, model=None, example=None, **kwargs) -> None:
    with pytest.raises(RegistrationError, match=re.escape(match)):
        labkit.register(
            model if model is not None else Tagger(),
            example if example is not None else torch.randn(2, 6, 8),
            name="bad",
            **kwargs,
        )


# --- dynamic_axes -------------------------------------------------------------------------


def test_axis_out_of_range() -> None:
    _refused(
        "dynamic_axes['input_0'] declares axis 3, but 'input_0' has rank 3 (shape "
        "[2, 6, 8]): use an axis in 0..2 (or -3..-1 counting from the end)",
        dynamic_axes={"input_0": {3: "seq"}},
    )


def test_negative_axis_is_normalized_and_the_output_follows() -> None:
    spec = labkit.register(
        Tagger(), torch.randn(2, 6, 8), name="neg", dynamic_axes={"input_0": {-2: "seq"}}
    )
    assert spec.dynamic_axes == {"input_0": {1: "seq"}, "output": {1: "seq"}}
    assert spec.notes == (
        "output 'output' axis 1 follows 'input_0' axis 1: declared dynamic as 'seq'",
    )


def test_same_axis_twice() -> None:
    _refused(
        "dynamic_axes['input_0'] names axis 1 twice ('seq' and 'len', negative axes "
        "count from the end): keep one",
        dynamic_axes={"input_0": {1: "seq", -2: "len"}},
    )


def test_batch_is_the_name_of_axis_0() -> None:
    _refused(
        "dynamic_axes['input_0'] names axis 1 'batch', the name of axis 0 of every input "
        "and output: give it its own name, e.g. {1: 'sequence'}",
        dynamic_axes={"input_0": {1: "batch"}},
    )


def test_unknown_name() -> None:
    _refused(
        "dynamic_axes names 'tokens', but the inputs are ['input_0'] and the outputs ['output']",
        dynamic_axes={"tokens": {1: "seq"}},
    )


def test_axis_not_a_number() -> None:
    _refused(
        "dynamic_axes['input_0'] must map axis numbers to dimension names, e.g. "
        "{1: 'sequence'}; got {'1': 'seq'}",
        dynamic_axes={"input_0": {"1": "seq"}},
    )


def test_output_stated_without_the_axis_that_follows() -> None:
    _refused(
        "output 'output' axis 1 follows 'seq' (6 → 5 when 'input_0' axis 1 changes), but "
        "dynamic_axes['output'] does not declare it: add 1: 'seq' to "
        "dynamic_axes['output']",
        dynamic_axes={"input_0": {1: "seq"}, "output": {0: "batch"}},
    )


def test_output_axis_declared_that_does_not_follow() -> None:
    _refused(
        "dynamic_axes declares output 'output' axis 2 as 'seq', but it is 5 → 5 when "
        "'seq' goes 6 → 5: remove it (axis 1 is the one that follows it)",
        dynamic_axes={"input_0": {1: "seq"}, "output": {1: "seq", 2: "seq"}},
    )


def test_one_name_two_sizes() -> None:
    class Two(torch.nn.Module):
        def forward(self, a, b):
            return a.sum(1) + b.sum(1)

    _refused(
        "dynamic_axes names 'seq' on 'input_0' axis 1 (size 6) and on 'input_1' axis 1 "
        "(size 4); one name means one size",
        model=Two(),
        example=(torch.randn(2, 6), torch.randn(2, 4)),
        dynamic_axes={"input_0": {1: "seq"}, "input_1": {1: "seq"}},
    )


def test_output_changing_with_an_undeclared_axis() -> None:
    class Doubler(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x, x], dim=1), x.sum(1)

    _refused(
        "output 'output_0' axis 1 changes with 'seq' (12 → 10 when 'seq' goes 6 → 5), "
        "but is not declared dynamic: add 'output_0': {1: '<name>'} to dynamic_axes",
        model=Doubler(),
        dynamic_axes={"input_0": {1: "seq"}, "output_0": {}},
    )


def test_dimension_the_model_cannot_change() -> None:
    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(48, 2)

        def forward(self, x):
            return self.fc(x.flatten(1))

    _refused(
        "dynamic_axes declares 'input_0' axis 1 as 'seq', but the model fails when it is "
        "5 instead of 6: RuntimeError:",
        model=Flat(),
        dynamic_axes={"input_0": {1: "seq"}},
    )


# --- inputs ---------------------------------------------------------------------------------


def test_dict_key_that_is_not_a_parameter() -> None:
    _refused(
        "example_inputs passes 'ids', but Tagger.forward has no such parameter (it takes "
        "x); use forward's parameter names as keys, or a tuple for positional arguments",
        example={"ids": torch.randn(2, 6, 8)},
    )


def test_inputs_as_keywords_of_register() -> None:
    with pytest.raises(
        RegistrationError,
        match=re.escape(
            "register() has no option 'input_ids'. Pass the model's inputs as a dict, "
            "register(model, {'input_ids': ...}, name=...), or as kwargs={'input_ids': ...}"
        ),
    ):
        labkit.register(Tagger(), name="kw", input_ids=torch.zeros(2, 6, dtype=torch.long))


def test_list_of_tensors_as_a_keyword() -> None:
    class Takes(torch.nn.Module):
        def forward(self, x, extra=None):
            return x

    _refused(
        "input 'extra' is a list of tensors; labkit hands off tensor inputs one by one: "
        "pass each tensor as its own keyword",
        model=Takes(),
        kwargs={"extra": [torch.randn(2), torch.randn(2)]},
    )


def test_input_given_twice() -> None:
    _refused(
        "input 'x' is given both in example_inputs and in kwargs; pass it once",
        example={"x": torch.randn(2, 6, 8)},
        kwargs={"x": torch.randn(2, 6, 8)},
    )


def test_parity_batch_in_another_form() -> None:
    _refused(
        "parity_inputs[0] has keys ['y']; the model's inputs are ['input_0']",
        parity_inputs=[{"y": torch.randn(2, 6, 8)}],
    )


# --- outputs --------------------------------------------------------------------------------


class WithCache(torch.nn.Module):
    def forward(self, x):
        return {"logits": x * 2, "past_key_values": ((x, x),)}


def test_cache_without_use_cache_is_refused_and_outputs_choose() -> None:
    _refused(
        "forward returned a cache, past_key_values (tuple): caches are state, not "
        "outputs. Pass use_cache=False in kwargs= if forward takes it, or outputs=[...] "
        "to choose from ['logits']",
        model=WithCache(),
    )
    spec = labkit.register(WithCache(), torch.randn(2, 6, 8), name="cache-ok", outputs=["logits"])
    assert spec.output_names == ("logits",)


def test_output_without_a_batch_axis() -> None:
    class WithBias(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.lin(x), self.lin.bias * 2

    _refused(
        "output 'output_1' has no batch axis: shape [3] with a batch of 2, [3] with 3; "
        "labkit hands off outputs with one row per input row. Leave it out with "
        "outputs=['output_0'], or return it per row",
        model=WithBias(),
        example=torch.randn(2, 8),
    )
    spec = labkit.register(WithBias(), torch.randn(2, 8), name="bias-dropped", outputs=["output_0"])
    assert spec.output_names == ("output_0",)


def test_unknown_output_name() -> None:
    _refused(
        "outputs names 'probs', but forward returned Tensor with outputs ['output']; "
        "choose from those",
        outputs=["probs"],
    )


def test_forward_failing_on_its_own_output_handling_is_not_blamed_on_the_inputs() -> None:
    class Broken(torch.nn.Module):
        def forward(self, x):
            hidden = (x,)
            return hidden.last_hidden_state

    with pytest.raises(RegistrationError) as err:
        labkit.register(Broken(), torch.randn(2, 6, 8), name="broken")
    text = str(err.value)
    assert text.startswith(
        "Broken.forward raised on example_inputs (input_0: float32[2, 6, 8]):"
        " AttributeError: 'tuple' object has no attribute "
        "'last_hidden_state' (at test_models_refusals.py:"
    )
    assert "in forward). If the inputs are wrong" in text
    assert "rejected" not in text


# --- the exported signature, and engine errors ----------------------------------------------


def _identity_graph(declared_out: list) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, declared_out)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_signature_that_lies_fails_with_a_named_error() -> None:
    example = {"x": np.zeros((2, 12), np.float32)}
    with pytest.raises(
        SignatureError,
        match=re.escape(
            "the exported signature would be wrong: output 'y' axis 1 is 11 with batch=3, "
            "seq=11, but the signature fixes it at 12 (['batch', 12]). Declare the axes"
        ),
    ):
        shapes.check(_identity_graph(["batch", 12]), example, declare_hint="declare the axes")
    shapes.check(_identity_graph(["batch", "seq"]), example, declare_hint="unused")


def test_declared_output_axes_replace_a_traced_constant() -> None:
    model = _identity_graph(["batch", 12])
    shapes.declare_outputs(model, {"y": {0: "batch", 1: "seq"}})
    dims = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "seq"]
    shapes.check(model, {"x": np.zeros((2, 12), np.float32)}, declare_hint="unused")


def test_engine_error_without_a_limit_names_the_dynamic_sizes() -> None:
    specs = [TensorSpec("ids", "int64", ("batch", "sequence"))]
    # ONNX Runtime's own exception type, as its session classifies it (behind the seam).
    ort_exc = type("RuntimeException", (Exception,), {"__module__": "onnxruntime.capi.x"})(
        "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Attempting to broadcast an axis"
    )
    exc = classify(ort_exc)
    assert isinstance(exc, InputError) and exc.detail == "Attempting to broadcast an axis"
    err = engine_error(specs, {"ids": np.zeros((1, 9), np.int64)}, exc)
    assert isinstance(err, InputError)
    assert str(err) == (
        "the model cannot run on these inputs with 'ids' axis 1 (sequence) = 9: "
        "a size is outside what the model supports (ONNX Runtime: Attempting "
        "to broadcast an axis)"
    )


def test_fallback_is_stated_plainly() -> None:
    assert Exporter("dynamo", 18).describe() == "exported with the dynamo exporter, opset 18"
    assert Exporter("torchscript", 17, "dynamo exporter failed: UserError: boom").describe() == (
        "exported with the torchscript exporter, opset 17; FELL BACK from the dynamo "
        "exporter, which failed: UserError: boom"
    )
