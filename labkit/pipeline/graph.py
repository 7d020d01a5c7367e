"""Facts read off an ONNX graph: its I/O signature, op counts, and the two fingerprints.

The *architecture* fingerprint digests the graph with weight values removed (names, shapes
and dtypes of initializers stay), so retraining leaves it unchanged; the *weights* digest
covers the values. Together they decide major vs minor versions.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

_WEIGHT_FIELDS = (
    "raw_data",
    "float_data",
    "int32_data",
    "int64_data",
    "double_data",
    "uint64_data",
    "string_data",
)
# Constant nodes up to this many elements are structure (shapes, axes), above it weights.
_STRUCTURAL_CONSTANT = 64


def _dtype(elem_type: int) -> str:
    return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))


def _tensor_spec(value: onnx.ValueInfoProto) -> dict[str, Any]:
    tt = value.type.tensor_type
    shape: list[int | str] = []
    for axis, dim in enumerate(tt.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        else:
            shape.append(dim.dim_param or f"dim_{axis}")
    return {"name": value.name, "dtype": _dtype(tt.elem_type), "shape": shape}


def signature(model: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    init = {i.name for i in model.graph.initializer}
    return {
        "inputs": [_tensor_spec(v) for v in model.graph.input if v.name not in init],
        "outputs": [_tensor_spec(v) for v in model.graph.output],
    }


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


#: Operator domains every ONNX engine implements (the default domain is spelled "" or
#: "ai.onnx"); anything else (``com.microsoft`` contrib ops, a model-local function) is one
#: engine's business.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


def _nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    out = []
    for node in graph.node:
        out.append(node)
        for attr in node.attribute:
            for sub in (attr.g,) if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                out += _nodes(sub)
    return out


def op_domains(model: onnx.ModelProto) -> dict[str, int]:
    """Nodes per operator domain ("" counted as ``ai.onnx``), subgraphs included."""
    counts = Counter(n.domain or "ai.onnx" for n in _nodes(model.graph))
    return dict(sorted(counts.items()))


def nonstandard_ops(model: onnx.ModelProto) -> list[str]:
    """``domain.Op`` of every operator outside :data:`STANDARD_DOMAINS`, sorted."""
    return sorted(
        {f"{n.domain}.{n.op_type}" for n in _nodes(model.graph) if n.domain not in STANDARD_DOMAINS}
    )


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _weight_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if (
                    attr.type == onnx.AttributeProto.TENSOR
                    and int(np.prod(attr.t.dims)) > _STRUCTURAL_CONSTANT
                ):
                    tensors.append(attr.t)
    return tensors


def architecture_digest(model: onnx.ModelProto) -> str:
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    skeleton.producer_version = ""
    skeleton.doc_string = ""
    del skeleton.metadata_props[:]
    skeleton.graph.doc_string = ""
    for tensor in _weight_tensors(skeleton):
        for name in _WEIGHT_FIELDS:
            tensor.ClearField(name)
    # The dynamo exporter stamps nodes and values with metadata (stack traces naming the
    # source file, e.g. a notebook cell's temp file): provenance, not architecture.
    for value in (
        *skeleton.graph.input,
        *skeleton.graph.output,
        *skeleton.graph.value_info,
        *skeleton.graph.initializer,
    ):
        del value.metadata_props[:]
    for node in skeleton.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
        for attr in node.attribute:
            attr.doc_string = ""
    return _digest(skeleton.graph.SerializeToString(deterministic=True))


def weights_digest(model: onnx.ModelProto) -> str:
    h = hashlib.sha256()
    for tensor in sorted(_weight_tensors(model), key=lambda t: t.name):
        arr = np.ascontiguousarray(numpy_helper.to_array(tensor))
        h.update(_canonical([tensor.name, str(arr.dtype), list(arr.shape)]))
        h.update(arr.tobytes())
    return "sha256:" + h.hexdigest()


def fingerprint(model: onnx.ModelProto, metadata: dict[str, Any]) -> dict[str, str]:
    return {
        "architecture": architecture_digest(model),
        "weights": weights_digest(model),
        "signature": _digest(_canonical(signature(model))),
        "metadata": _digest(_canonical(metadata)),
    }
