"""What verify checks *inside* files, on the very bytes it hashed.

Variant models: [onnx], [external-data], [signature]. Golden files: [golden] (member names,
dtypes, shapes, declared sizes, no pickle). Checking the hashed bytes — not a second read —
closes the gap where a file is swapped between the digest check and the content check; the
bytes a session later gets are hashed again against the same digest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from labkit.bundle.graph_check import check_no_external_data
from labkit.bundle.graph_signature import check_signature
from labkit.bundle.npz import check_npz, golden_specs
from labkit.bundle.tensors import Signature

if TYPE_CHECKING:
    from labkit.bundle.manifest import Manifest


def check_model(data: bytes, rel: str, signature: Signature) -> None:
    """[onnx], [external-data], [signature] for one variant's model bytes."""
    graph = check_no_external_data(data, rel)
    check_signature(graph, signature, rel)


class ContentChecks:
    """Per-bundle content checks; golden symbolic dims are bound across both golden files."""

    def __init__(self, manifest: Manifest) -> None:
        self._manifest = manifest
        self._models = {v.file for v in manifest.variants}
        self._golden = [manifest.golden.inputs, manifest.golden.expected]
        self._bound: dict[str, int] = {}

    def wants(self, rel: str) -> bool:
        return rel in self._models or rel in self._golden

    def order(self, rels: Iterable[str]) -> list[str]:
        """``rels`` sorted, golden inputs before golden expected (they bind the dims)."""
        rank = {rel: i for i, rel in enumerate(self._golden)}
        return sorted(rels, key=lambda r: (rank.get(r, -1), r))

    def check(self, rel: str, data: bytes) -> None:
        if rel in self._models:
            check_model(data, rel, self._manifest.signature)
        if rel in self._golden:
            check_npz(
                data,
                rel,
                golden_specs(self._manifest, rel),
                self._bound,
                rows=self._manifest.golden.rows,
            )
