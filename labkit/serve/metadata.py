"""Typed metadata the data plane reports, whatever the protocol: the server, a model, a tensor.

REST writes these as JSON (``to_json``), gRPC as protobuf messages; neither builds its own.
What a model reports comes from the bundle's signature and from what actually runs: the
platform is named after the engine of the candidate that was loaded, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any

from labkit.runtime import Model
from labkit.serve.codec import oip_datatype

__all__ = [
    "EXTENSIONS",
    "PLATFORMS",
    "ModelMetadata",
    "ServerMetadata",
    "TensorMetadata",
    "model_metadata",
    "server_metadata",
]

EXTENSIONS = ("binary_tensor_data", "classification")
# Triton's platform names where it has one; another engine reports its own name.
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino"}


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str  # the protocol's name: FP32, INT64, BYTES ...
    shape: tuple[int, ...]  # -1 for a symbolic dim

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]  # every version being served, lowest first
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": list(self.versions),
            "platform": self.platform,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "extensions": list(self.extensions)}


def _tensor(spec: Any) -> TensorMetadata:
    shape = tuple(d if isinstance(d, int) else -1 for d in spec.shape)
    return TensorMetadata(spec.name, oip_datatype(spec.dtype), shape)


def platform_of(model: Model) -> str:
    engine = model.candidate.engine
    return PLATFORMS.get(engine, engine)


def model_metadata(model: Model, versions: list[str]) -> ModelMetadata:
    return ModelMetadata(
        model.name,
        tuple(versions),
        platform_of(model),
        tuple(_tensor(s) for s in model.inputs),
        tuple(_tensor(s) for s in model.outputs),
    )


def _server_version() -> str:
    try:
        return importlib_metadata.version("labkit")
    except importlib_metadata.PackageNotFoundError:
        import labkit

        return str(getattr(labkit, "__version__", "0+unknown"))


def server_metadata() -> ServerMetadata:
    return ServerMetadata("labkit", _server_version(), EXTENSIONS)
