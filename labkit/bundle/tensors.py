"""A model's signature: named, typed tensors with fixed or named (symbolic) dimensions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labkit.bundle._check import fail, obj, require

DTYPES = frozenset(
    {
        "float16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool",
    }
)


def tensor_text(dtype: str, shape: Any) -> str:
    """How a tensor's type reads everywhere: ``float32[batch, 64]`` (no quotes)."""
    return f"{dtype}[{', '.join(str(d) for d in shape)}]"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int | str, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "tensor") -> TensorSpec:
        """Parse and check one ``{"name", "dtype", "shape"}`` object ([schema])."""
        t = obj(d, where)
        name = require(t, "name", str, f"{where}.")
        if not name or len(name) > 128:
            raise fail(f"{where}.name", "must be 1–128 characters")
        dtype = require(t, "dtype", str, f"{where}.")
        if dtype not in DTYPES:
            raise fail(f"{where}.dtype", f"{dtype!r} is not one of {sorted(DTYPES)}")
        shape = require(t, "shape", list, f"{where}.")
        for dim in shape:
            ok_int = isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0
            ok_sym = isinstance(dim, str) and 0 < len(dim) <= 64
            if not (ok_int or ok_sym):
                raise fail(f"{where}.shape", f"dimension {dim!r} is neither >= 0 nor a name")
        return cls(name, dtype, tuple(shape))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    def __str__(self) -> str:
        return f"{self.name}: {tensor_text(self.dtype, self.shape)}"

    def __repr__(self) -> str:
        return f"TensorSpec({self})"


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_dict(cls, d: Any, where: str = "signature") -> Signature:
        sig = obj(d, where)
        sides = []
        for side in ("inputs", "outputs"):
            tensors = require(sig, side, list, f"{where}.")
            if not tensors:
                raise fail(f"{where}.{side}", "must not be empty")
            names = [t.get("name") if isinstance(t, dict) else None for t in tensors]
            if len(set(map(str, names))) != len(names):
                raise fail(f"{where}.{side}", "tensor names must be unique")
            sides.append(
                tuple(
                    TensorSpec.from_dict(t, f"{where}.{side}[{i}]") for i, t in enumerate(tensors)
                )
            )
        return cls(sides[0], sides[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]
