"""[signature]: the manifest's signature must be the variant graph's own.

Read from the graph's ``ValueInfoProto`` inputs/outputs with the wire reader (no ``onnx``).
Graph inputs that are also initializers are not model inputs (ONNX Runtime does not require
them), exactly as the exporter leaves them out of the manifest. The rule, per tensor:

- the same set of input names and the same set of output names on both sides;
- the graph's element type maps to the manifest's ``dtype`` exactly;
- when the graph declares a shape, the same rank;
- per axis: a fixed graph dim requires the same fixed manifest dim (a symbolic manifest dim
  there would promise sizes the graph refuses); a symbolic or unknown graph dim accepts a
  fixed or symbolic manifest dim of any name (the runtime enforces the manifest's, which is
  then at least as strict as the graph's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from labkit.bundle import onnx_wire as w
from labkit.bundle.tensors import Signature, TensorSpec
from labkit.errors import FormatError

# TensorProto.DataType → NumPy dtype name (only the dtypes a manifest may declare).
ELEM_TYPES: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
}


_OTHER_TYPES = frozenset(
    {
        w.TypeField.SEQUENCE_TYPE,
        w.TypeField.MAP_TYPE,
        w.TypeField.OPAQUE_TYPE,
        w.TypeField.SPARSE_TENSOR_TYPE,
        w.TypeField.OPTIONAL_TYPE,
    }
)


@dataclass(frozen=True)
class GraphTensor:
    name: str
    elem_type: int
    shape: tuple[int | str | None, ...] | None  # None: no shape declared; None dim: unknown

    @property
    def dtype(self) -> str:
        return ELEM_TYPES.get(self.elem_type, f"ONNX element type {self.elem_type}")


def _one(span: w.Span, number: int, where: str) -> w.Span | None:
    """The single occurrence of a sub-message; two would be merged by protobuf: refused."""
    found: w.Span | None = None
    for n, wire, value in w.fields(span, where):
        if n == number:
            if found is not None:
                raise w.malformed(where, f"field {number} of a type description repeats")
            found = w.expect_len(n, wire, value, where)
    return found


def _value_info(span: w.Span, rel: str) -> GraphTensor:
    name = ""
    type_span: w.Span | None = None
    for n, wire, value in w.fields(span, rel):
        if n == w.ValueInfoField.NAME and isinstance(value, w.Span):
            name = value.bytes().decode("utf-8", "replace")
        elif n == w.ValueInfoField.TYPE:
            if type_span is not None:
                raise w.malformed(rel, f"value {name!r} has two types")
            type_span = w.expect_len(n, wire, value, rel)
    tensor = _one(type_span, w.TypeField.TENSOR_TYPE, rel) if type_span else None
    if (
        tensor is not None
        and type_span is not None
        and any(n in _OTHER_TYPES for n, _wt, _v in w.fields(type_span, rel))
    ):
        tensor = None  # a later oneof member replaces tensor_type when protobuf parses it
    if tensor is None:
        raise FormatError(
            f"{rel}: graph value {name!r} is not a tensor; labkit bundles take "
            "and return plain tensors only",
            rule="signature",
        )
    elem = 0
    for n, wire, value in w.fields(tensor, rel):
        if n == w.TensorTypeField.ELEM_TYPE and wire == w.VARINT and isinstance(value, int):
            elem = value
    shape_span = _one(tensor, w.TensorTypeField.SHAPE, rel)
    if shape_span is None:
        return GraphTensor(name, elem, None)
    dims: list[int | str | None] = []
    for n, wire, value in w.fields(shape_span, rel):
        if n != w.ShapeField.DIM:
            continue
        dim: int | str | None = None
        for n2, wire2, v2 in w.fields(w.expect_len(n, wire, value, rel), rel):
            if n2 == w.DimField.DIM_VALUE and wire2 == w.VARINT and isinstance(v2, int):
                dim = w.signed64(v2)
            elif n2 == w.DimField.DIM_PARAM and isinstance(v2, w.Span):
                dim = v2.text(64)
        dims.append(dim if not isinstance(dim, int) or dim >= 0 else None)
    return GraphTensor(name, elem, tuple(dims))


def graph_io(graph: w.Span, rel: str) -> tuple[list[GraphTensor], list[GraphTensor]]:
    """The graph's model inputs (initializers excluded) and outputs."""
    inputs: list[GraphTensor] = []
    outputs: list[GraphTensor] = []
    initializers: set[str] = set()
    for n, wire, value in w.fields(graph, rel):
        if n == w.GraphField.INPUT:
            inputs.append(_value_info(w.expect_len(n, wire, value, rel), rel))
        elif n == w.GraphField.OUTPUT:
            outputs.append(_value_info(w.expect_len(n, wire, value, rel), rel))
        elif n == w.GraphField.INITIALIZER:
            for n2, _wt, v2 in w.fields(w.expect_len(n, wire, value, rel), rel):
                if n2 == w.TensorField.NAME and isinstance(v2, w.Span):
                    initializers.add(v2.bytes().decode("utf-8", "replace"))
    return [t for t in inputs if t.name not in initializers], outputs


def _refuse(rel: str, message: str) -> FormatError:
    return FormatError(
        f"{rel}: {message}; the manifest signature must describe the graph (re-export the bundle)",
        rule="signature",
    )


def _compare_side(
    side: str, graph: Sequence[GraphTensor], manifest: Sequence[TensorSpec], rel: str
) -> None:
    by_name = {t.name: t for t in graph}
    listed = [t.name for t in manifest]
    if len(by_name) != len(graph) or set(by_name) != set(listed):
        raise _refuse(
            rel,
            f"the graph's {side} are {sorted(t.name for t in graph)!r}, the "
            f"manifest lists {sorted(listed)!r}",
        )
    for spec in manifest:
        g = by_name[spec.name]
        if g.dtype != spec.dtype:
            raise _refuse(
                rel,
                f"{side[:-1]} {g.name!r} is {g.dtype} in the graph, {spec.dtype} in the manifest",
            )
        if g.shape is None:
            continue
        want = list(spec.shape)
        if len(g.shape) != len(want):
            raise _refuse(
                rel,
                f"{side[:-1]} {g.name!r} has rank {len(g.shape)} in the graph "
                f"{list(g.shape)}, rank {len(want)} in the manifest {want}",
            )
        for axis, (gd, md) in enumerate(zip(g.shape, want)):
            if isinstance(gd, int) and gd != md:
                raise _refuse(
                    rel,
                    f"{side[:-1]} {g.name!r} axis {axis} is fixed at {gd} in "
                    f"the graph, the manifest says {md!r}",
                )


def check_signature(graph: w.Span, signature: Signature, rel: str) -> None:
    """Refuse [signature] unless ``signature`` describes ``graph``."""
    inputs, outputs = graph_io(graph, rel)
    _compare_side("inputs", inputs, signature.inputs, rel)
    _compare_side("outputs", outputs, signature.outputs, rel)
