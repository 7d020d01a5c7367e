"""ONNX Runtime: always installed, the default engine, runs every variant as stored."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

from labkit.bundle.parts import Variant
from labkit.runtime.engines import EXACT, Session


class ORTEngine:
    name = "onnxruntime"

    def available(self) -> bool:
        return self.version() is not None

    def version(self) -> str | None:
        try:
            return metadata.version("onnxruntime")
        except metadata.PackageNotFoundError:
            return None

    def precisions(self, variant: Variant, cpu: Mapping[str, Any]) -> tuple[str, ...]:
        return (EXACT,)

    def session(
        self, model_bytes: bytes, *, precision: str = EXACT, threads: int | None = None
    ) -> Session:
        if precision != EXACT:
            raise ValueError(
                f"ONNX Runtime runs graphs as stored; precision {precision!r} "
                f"is not offered (use {EXACT!r})"
            )
        # session.py owns how an ORT session is made from verified bytes (and any check
        # that must run before one exists).
        from labkit.runtime.session import make_session

        sess: Session = make_session(model_bytes, threads=threads)
        return sess
