"""JSON schemas of the Open Inference Protocol v2 REST responses, transcribed from
kserve/open-inference-protocol ``specification/protocol/open_inference_rest.yaml``.

Optional fields are typed (no ``null``), which is how a server that emits ``null`` for an
omitted field fails. For binary outputs the binary tensor extension replaces ``data`` with
``parameters.binary_data_size``, so ``data`` is required only when that parameter is absent.
"""

from __future__ import annotations

from typing import Any

_PARAMETERS = {"type": "object"}
_TENSOR_DATA = {"type": "array"}

METADATA_SERVER = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "version", "extensions"],
}
_METADATA_TENSOR = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["name", "datatype", "shape"],
}
METADATA_MODEL = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _METADATA_TENSOR},
        "outputs": {"type": "array", "items": _METADATA_TENSOR},
    },
    "required": ["name", "platform"],
}
_RESPONSE_OUTPUT = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "parameters": _PARAMETERS,
        "data": _TENSOR_DATA,
    },
    "required": ["name", "shape", "datatype"],
    "anyOf": [
        {"required": ["data"]},
        {
            "required": ["parameters"],
            "properties": {"parameters": {"required": ["binary_data_size"]}},
        },
    ],
}
INFERENCE_RESPONSE = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": _PARAMETERS,
        "outputs": {"type": "array", "items": _RESPONSE_OUTPUT},
    },
    "required": ["model_name", "outputs"],
}
ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
    "additionalProperties": False,
}


def validate(doc: Any, schema: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(doc, schema)
