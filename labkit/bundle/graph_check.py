"""Rules about what is inside a variant's ONNX graph, checked without ``onnx`` or a session.

[external-data]: no tensor anywhere in the model may live outside it. ONNX Runtime resolves
an external-data ``location`` against the process's working directory even when the model is
handed over as bytes (``../`` and absolute paths included), so a bundle with one could make
a server read — and return as an output — any file it can open. Every place a TensorProto
can occur is visited: graph initializers and sparse initializers, node attributes (``t``,
``tensors``, ``sparse_tensor``, ``sparse_tensors``) — so ``Constant`` nodes — subgraphs
(``g``, ``graphs``: ``If``/``Loop``/``Scan`` bodies, to any depth), function bodies and
their default attributes, and training-info graphs.

[signature]: the manifest's signature must be the graph's (see :mod:`graph_signature`).

The walk is iterative with an explicit depth bound, and each byte of the model is read at
most once per message level it belongs to, so time is linear in the model's size.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.bundle import onnx_wire as w
from labkit.errors import FormatError

# Message nesting allowed (model → graph → node → attribute → graph … counts each level).
# 64 levels is 15 nested subgraphs, far past any exported model, and far below a stack risk.
MAX_DEPTH = 64
# Protobuf fields visited per model. The walk costs ~1–2 µs a field in Python, so this bounds
# a verify to seconds even for a model padded with millions of tiny (e.g. unpacked numeric)
# fields; real exports use thousands (the zoo's transformer: ~3,000), large LLM graphs well
# under a million. Tensor payloads (raw_data, packed arrays) are one field each.
MAX_FIELDS = 4_000_000

_MODEL, _TRAINING, _FUNCTION, _GRAPH, _NODE, _ATTRIBUTE, _TENSOR, _SPARSE = range(8)

# For each message kind: field number → (kind of the child message, how to describe it).
_CHILDREN: dict[int, dict[int, tuple[int, str]]] = {
    _MODEL: {
        w.ModelField.GRAPH: (_GRAPH, "graph"),
        w.ModelField.FUNCTIONS: (_FUNCTION, "function"),
        w.ModelField.TRAINING_INFO: (_TRAINING, "training info"),
    },
    _TRAINING: {
        w.TrainingInfoField.INITIALIZATION: (_GRAPH, "initialization graph"),
        w.TrainingInfoField.ALGORITHM: (_GRAPH, "algorithm graph"),
    },
    _FUNCTION: {
        w.FunctionField.NODE: (_NODE, "node"),
        w.FunctionField.ATTRIBUTE_PROTO: (_ATTRIBUTE, "default attribute"),
    },
    _GRAPH: {
        w.GraphField.NODE: (_NODE, "node"),
        w.GraphField.INITIALIZER: (_TENSOR, "initializer"),
        w.GraphField.SPARSE_INITIALIZER: (_SPARSE, "sparse initializer"),
    },
    _NODE: {w.NodeField.ATTRIBUTE: (_ATTRIBUTE, "attribute")},
    _ATTRIBUTE: {
        w.AttributeField.T: (_TENSOR, "tensor"),
        w.AttributeField.TENSORS: (_TENSOR, "tensor"),
        w.AttributeField.SPARSE_TENSOR: (_SPARSE, "sparse tensor"),
        w.AttributeField.SPARSE_TENSORS: (_SPARSE, "sparse tensor"),
        w.AttributeField.G: (_GRAPH, "subgraph"),
        w.AttributeField.GRAPHS: (_GRAPH, "subgraph"),
    },
    _SPARSE: {
        w.SparseTensorField.VALUES: (_TENSOR, "values"),
        w.SparseTensorField.INDICES: (_TENSOR, "indices"),
    },
    _TENSOR: {},
}
# The field that names a message of each kind, for error messages.
_NAME_FIELD = {
    _GRAPH: w.GraphField.NAME,
    _NODE: w.NodeField.NAME,
    _FUNCTION: w.FunctionField.NAME,
    _ATTRIBUTE: w.AttributeField.NAME,
    _TENSOR: w.TensorField.NAME,
}


@dataclass(frozen=True)
class _Item:
    kind: int
    span: w.Span
    depth: int
    where: str


def _describe(where: str, name: str, op_type: str) -> str:
    text = f"{where} {name!r}" if name else where
    return f"{text} ({op_type})" if op_type else text


def _external_location(tensor: w.Span, where: str) -> str:
    for number, _wire, value in w.fields(tensor, where):
        if number == w.TensorField.EXTERNAL_DATA and isinstance(value, w.Span):
            key = val = ""
            for n2, _wt, v2 in w.fields(value, where):
                if isinstance(v2, w.Span):
                    if n2 == w.EntryField.KEY:
                        key = v2.text()
                    elif n2 == w.EntryField.VALUE:
                        val = v2.text()
            if key == "location":
                return f" (location {val!r})"
    return ""


def check_no_external_data(model: bytes | memoryview, rel: str) -> w.Span:
    """Refuse [external-data] anywhere in ``model``; return the main graph's span.

    Malformed bytes are refused as [onnx]. A model with no graph, or two (protobuf would
    silently merge them), is refused too: the graph ORT runs must be the one checked here.
    """
    buf = memoryview(model)
    stack = [_Item(_MODEL, w.Span(buf, 0, len(buf)), 0, "model")]
    main_graph: w.Span | None = None
    visited = 0
    while stack:
        item = stack.pop()
        if item.depth > MAX_DEPTH:
            raise w.malformed(rel, f"messages nest more than {MAX_DEPTH} deep")
        children: list[tuple[int, str, w.Span]] = []
        name = op_type = ""
        external = False
        table = _CHILDREN[item.kind]
        for number, wire, value in w.fields(item.span, rel):
            visited += 1
            if visited > MAX_FIELDS:
                raise w.malformed(rel, f"it has more than {MAX_FIELDS} protobuf fields")
            if number in table:
                kind, label = table[number]
                span = w.expect_len(number, wire, value, rel)
                children.append((kind, label, span))
                if item.kind == _MODEL and kind == _GRAPH:
                    if main_graph is not None:
                        raise w.malformed(rel, "the model holds more than one main graph")
                    main_graph = span
            elif number == _NAME_FIELD.get(item.kind) and isinstance(value, w.Span):
                name = value.text(80)
            elif item.kind == _NODE and number == w.NodeField.OP_TYPE and isinstance(value, w.Span):
                op_type = value.text(40)
            elif item.kind == _TENSOR and number == w.TensorField.EXTERNAL_DATA:
                external = True
            elif item.kind == _TENSOR and number == w.TensorField.DATA_LOCATION:
                # Any value but DEFAULT (0), in any encoding, counts: the reader must not
                # guess which of several occurrences protobuf would keep.
                external = external or wire != w.VARINT or value != 0
        if external:
            raise FormatError(
                f"{rel}: {_describe(item.where, name, '')} keeps its data outside the model"
                f"{_external_location(item.span, rel)}; ONNX Runtime would read that file "
                "from the server's disk. Bundles embed every tensor: export without external "
                "data (onnx.save(..., save_as_external_data=False))",
                rule="external-data",
            )
        here = _describe(item.where, name, op_type)
        for kind, label, span in reversed(children):
            where = label if item.kind == _MODEL else f"{here} > {label}"
            stack.append(_Item(kind, span, item.depth + 1, where))
    if main_graph is None:
        raise w.malformed(rel, "the model has no graph")
    return main_graph
