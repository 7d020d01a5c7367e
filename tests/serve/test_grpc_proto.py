"""The gRPC messages built at runtime are the protocol's: compared field by field with the
descriptors tritonclient ships (generated from Triton's grpc_service.proto), plus the
conversion of messages to the data plane's requests, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from labkit.serve.errors import BadRequest
from labkit.serve.grpc_proto import METHODS, SERVICE, messages

service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")
grpc_tensors = pytest.importorskip("labkit.serve.grpc_tensors")


def _fields(descriptor: object) -> list[tuple[object, ...]]:
    out = []
    for f in descriptor.fields:  # type: ignore[attr-defined]
        out.append(
            (
                f.name,
                f.number,
                f.type,
                f.is_repeated if hasattr(f, "is_repeated") else f.label,
                f.message_type.full_name if f.message_type else None,
                f.containing_oneof.name if f.containing_oneof else None,
            )
        )
    return out


def _same(ours: object, theirs: object) -> None:
    assert ours.full_name == theirs.full_name  # type: ignore[attr-defined]
    assert _fields(ours) == _fields(theirs), ours.full_name  # type: ignore[attr-defined]
    for nested in ours.nested_types:  # type: ignore[attr-defined]
        _same(nested, theirs.nested_types_by_name[nested.name])  # type: ignore[attr-defined]


def test_every_message_matches_tritons() -> None:
    ours = messages()
    for name, cls in ours.items():
        if "." in name:
            continue  # nested: compared with their outer message
        _same(cls.DESCRIPTOR, service_pb2.DESCRIPTOR.message_types_by_name[name])


def test_methods_and_service_name_match_tritons() -> None:
    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert SERVICE == service.full_name == "inference.GRPCInferenceService"
    for method, (request, response) in METHODS.items():
        theirs = service.methods_by_name[method]
        assert (theirs.input_type.name, theirs.output_type.name) == (request, response)
        assert not theirs.client_streaming and not theirs.server_streaming


def test_bytes_round_trip_with_tritons_classes() -> None:
    """What tritonclient serializes, ours parses to the same message, and back."""
    theirs = service_pb2.ModelInferRequest(model_name="m", model_version="1.0.0", id="x")
    theirs.parameters["k"].int64_param = 3
    t = theirs.inputs.add(name="a", datatype="INT8", shape=[2])
    t.contents.int_contents.extend([-128, 127])
    theirs.outputs.add(name="y").parameters["classification"].int64_param = 2
    ours = messages()["ModelInferRequest"].FromString(theirs.SerializeToString())
    assert service_pb2.ModelInferRequest.FromString(ours.SerializeToString()) == theirs
    request = grpc_tensors.infer_request(ours)
    assert request.parameters == {"k": 3} and request.id == "x"
    assert request.inputs[0].array.dtype == np.int8
    assert request.inputs[0].array.tolist() == [-128, 127]
    assert request.outputs[0].parameters == {"classification": 2}


def _request(**contents: list[object]) -> object:
    message = messages()["ModelInferRequest"](model_name="m")
    datatype = contents.pop("datatype", "INT8")
    t = message.inputs.add(name="a", datatype=datatype, shape=[2])
    for field, values in contents.items():
        getattr(t.contents, field).extend(values)
    return message


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (_request(int_contents=[300, 1]), "values out of range for INT8"),
        (_request(int64_contents=[1, 2]), "INT8 data goes in contents.int_contents"),
        (_request(datatype="FP16", fp32_contents=[1.0, 2.0]), "raw_input_contents"),
        (_request(datatype="FP99", fp32_contents=[1.0, 2.0]), "unknown datatype 'FP99'"),
    ],
    ids=["int8 range", "wrong field", "fp16 typed", "unknown datatype"],
)
def test_typed_contents_are_checked(message: object, words: str) -> None:
    with pytest.raises(BadRequest, match=words.replace("(", r"\(")):
        grpc_tensors.infer_request(message)


def test_raw_contents_for_every_input_or_none() -> None:
    message = messages()["ModelInferRequest"](model_name="m")
    message.inputs.add(name="a", datatype="FP32", shape=[1])
    message.inputs.add(name="b", datatype="FP32", shape=[1])
    message.raw_input_contents.append(np.float32(1).tobytes())
    with pytest.raises(BadRequest, match="every input raw, or none"):
        grpc_tensors.infer_request(message)
