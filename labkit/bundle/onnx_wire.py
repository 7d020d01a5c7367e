"""A minimal protobuf wire-format reader (standard library only) for ONNX model bytes.

The runtime must inspect a model before ONNX Runtime sees it ([external-data], [signature])
without importing ``onnx``. This reads just the wire format: tags, varints and
length-delimited fields, over a ``memoryview`` so nothing is copied. Every malformed input —
truncated varints, lengths past the end, groups, unknown wire types — is a one-line
``FormatError`` with rule ``[onnx]``, never an ``IndexError`` or a crash.

Field numbers come from onnx.proto; ``tests/attacks/test_bundle_external_data.py`` checks
each against the ``onnx`` package's own descriptors.
"""

from __future__ import annotations

from collections.abc import Iterator

from labkit.errors import FormatError

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
_MAX_VARINT_BYTES = 10


class ModelField:
    GRAPH = 7
    TRAINING_INFO = 20
    FUNCTIONS = 25


class TrainingInfoField:
    INITIALIZATION = 1
    ALGORITHM = 2


class GraphField:
    NODE = 1
    NAME = 2
    INITIALIZER = 5
    INPUT = 11
    OUTPUT = 12
    SPARSE_INITIALIZER = 15


class NodeField:
    NAME = 3
    OP_TYPE = 4
    ATTRIBUTE = 5


class FunctionField:
    NAME = 1
    NODE = 7
    ATTRIBUTE_PROTO = 11


class AttributeField:
    NAME = 1
    T = 5
    G = 6
    TENSORS = 10
    GRAPHS = 11
    SPARSE_TENSOR = 22
    SPARSE_TENSORS = 23


class TensorField:
    NAME = 8
    EXTERNAL_DATA = 13
    DATA_LOCATION = 14


class SparseTensorField:
    VALUES = 1
    INDICES = 2


class EntryField:  # StringStringEntryProto
    KEY = 1
    VALUE = 2


class ValueInfoField:
    NAME = 1
    TYPE = 2


class TypeField:
    TENSOR_TYPE = 1
    # The other members of TypeProto's ``value`` oneof (the last one set wins).
    SEQUENCE_TYPE = 4
    MAP_TYPE = 5
    OPAQUE_TYPE = 7
    SPARSE_TENSOR_TYPE = 8
    OPTIONAL_TYPE = 9


class TensorTypeField:
    ELEM_TYPE = 1
    SHAPE = 2


class ShapeField:
    DIM = 1


class DimField:
    DIM_VALUE = 1
    DIM_PARAM = 2


def malformed(where: str, message: str) -> FormatError:
    return FormatError(
        f"{where} is not a well-formed ONNX model: {message}; re-export it", rule="onnx"
    )


class Span:
    """A message's bytes: ``buf[start:end]`` of the whole model, without copying."""

    __slots__ = ("buf", "end", "start")

    def __init__(self, buf: memoryview, start: int, end: int) -> None:
        self.buf, self.start, self.end = buf, start, end

    def bytes(self) -> bytes:
        return bytes(self.buf[self.start : self.end])

    def text(self, limit: int = 200) -> str:
        """The field as text for messages (decoded leniently, cut to ``limit`` chars)."""
        raw = bytes(self.buf[self.start : min(self.end, self.start + 4 * limit)])
        return raw.decode("utf-8", "replace")[:limit]


def _varint(buf: memoryview, pos: int, end: int, where: str) -> tuple[int, int]:
    result = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos >= end:
            raise malformed(where, "a varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return result, pos
    raise malformed(where, "a varint is longer than 10 bytes")


def fields(span: Span, where: str) -> Iterator[tuple[int, int, int | Span]]:
    """Yield ``(field_number, wire_type, value)``: an int for VARINT, a Span for LEN.

    Fixed-width fields are skipped (yielded as 0). Groups are refused: ONNX never uses them,
    and skipping them correctly would need unbounded nesting.
    """
    buf, pos, end = span.buf, span.start, span.end
    while pos < end:
        tag, pos = _varint(buf, pos, end, where)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise malformed(where, "field number 0")
        if wire == VARINT:
            value, pos = _varint(buf, pos, end, where)
            yield number, wire, value
        elif wire == LEN:
            length, pos = _varint(buf, pos, end, where)
            if length > end - pos:
                raise malformed(
                    where, f"field {number} claims {length} bytes, only {end - pos} remain"
                )
            yield number, wire, Span(buf, pos, pos + length)
            pos += length
        elif wire in (I64, I32):
            width = 8 if wire == I64 else 4
            if width > end - pos:
                raise malformed(where, f"field {number} is truncated")
            pos += width
            yield number, wire, 0
        else:
            raise malformed(
                where,
                f"field {number} has wire type {wire} (groups and "
                "unknown wire types are not accepted)",
            )


def expect_len(number: int, wire: int, value: int | Span, where: str) -> Span:
    """A field the reader descends into must be length-delimited."""
    if wire != LEN or not isinstance(value, Span):
        raise malformed(where, f"field {number} should be a message but has wire type {wire}")
    return value


def signed64(value: int) -> int:
    """An int64 varint as a signed value (negative numbers are 10-byte two's complement)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value
