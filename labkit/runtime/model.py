"""A loaded bundle: verified first, then one ONNX Runtime session for the chosen variant."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labkit.bundle.integrity import VerifiedBundle, verify
from labkit.bundle.manifest import Manifest
from labkit.bundle.parts import Variant
from labkit.bundle.tolerance import Tolerance
from labkit.runtime.compare import accumulate
from labkit.runtime.session import make_session
from labkit.runtime.signature import TensorSpec, bind, engine_error, is_shape_error

if TYPE_CHECKING:
    from labkit.runtime.signing import TrustedKey


@dataclass
class SelfTestReport:
    """Golden vectors re-run on this machine, judged by the bundle's own tolerance."""

    name: str
    version: str
    variant: str
    ok: bool
    failures: list[str]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    tolerance: Tolerance | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "variant": self.variant,
                "ok": self.ok, "failures": list(self.failures), "outputs": self.outputs,
                "tolerance": self.tolerance.to_dict() if self.tolerance else None}


class Model:
    """Use :func:`load` to make one."""

    def __init__(self, bundle: VerifiedBundle, variant: str | None, threads: int | None):
        self._bundle = bundle
        self.manifest: Manifest = bundle.manifest
        entry = self.manifest.variant(variant)
        self.variant: str = entry.name
        self.variant_info: Variant = entry
        self.inputs: list[TensorSpec] = list(self.manifest.signature.inputs)
        self.outputs: list[TensorSpec] = list(self.manifest.signature.outputs)
        self._session = make_session(bundle.read(entry.file), threads=threads)
        self._output_names = [t.name for t in self.outputs]

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def path(self) -> Path:
        return self._bundle.root

    @property
    def labels(self) -> list[str] | None:
        labels = self.manifest.labels
        return None if labels is None else list(labels)

    def predict(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        """Run the model: positional arrays in signature order, or ``{name: array}``."""
        feed = bind(self.inputs, args, kwargs)
        try:
            results = self._session.run(self._output_names, feed)
        except Exception as exc:  # ONNX Runtime's error types live in its native module
            if is_shape_error(exc):
                raise engine_error(self.inputs, feed, exc) from None
            raise
        return dict(zip(self._output_names, results))

    def golden_inputs(self) -> dict[str, np.ndarray]:
        """The golden inputs, re-hashed as read and bounded by the signature ([golden]).
        Every reader of golden files goes through here or ``VerifiedBundle.read_npz``."""
        return self._bundle.read_npz(self.manifest.golden.inputs)

    def self_test(self) -> SelfTestReport:
        golden = self.manifest.golden
        inputs = self._bundle.read_npz(golden.inputs)
        expected = self._bundle.read_npz(golden.expected)
        got = self.predict({s.name: inputs[s.name] for s in self.inputs})
        stats = accumulate([(expected, got)], self._output_names)
        tol = self.variant_info.tolerance
        fails = tol.judge(stats, self.variant)
        return SelfTestReport(self.name, self.version, self.variant, not fails, fails,
                              {n: s.to_dict() for n, s in stats.items()}, tol)

    def __repr__(self) -> str:
        ins = ", ".join(str(s) for s in self.inputs)
        outs = ", ".join(str(s) for s in self.outputs)
        return f"<labkit Model {self.name} {self.version} [{self.variant}] ({ins}) -> ({outs})>"


def load(path: str | os.PathLike[str], *, variant: str | None = None,
         threads: int | None = None,
         trusted_keys: Sequence[str | os.PathLike[str] | TrustedKey] | None = None) -> Model:
    """Verify the bundle at ``path`` (every rule, before any session exists), then load it.

    With ``trusted_keys`` (PEM public key paths), only a bundle signed by one of them over
    exactly its files is loaded ([signature-trust]); this needs ``labkit[sign]``.
    """
    bundle = verify(path)
    if trusted_keys is not None:
        from labkit.runtime.signing import as_trusted_keys, check_signature

        check_signature(bundle, as_trusted_keys(trusted_keys))
    return Model(bundle, variant, threads)
