"""What is in a store: one entry per bundle version, each read by the strict reader.

``handoff list`` and the JupyterLab side panel both list bundles with :func:`list_bundles`;
an unreadable bundle is listed with its ``problem`` rather than hidden.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from labkit.bundle.manifest import Manifest
from labkit.bundle.store import Store
from labkit.errors import LabkitError


class StoreLike(Protocol):
    """A local :class:`Store` or a remote one (``labkit.runtime.remote.RemoteStore``)."""

    @property
    def root(self) -> Path | str: ...

    def names(self) -> list[str]: ...

    def versions(self, name: str) -> list[str]: ...

    def manifest(self, name: str, version: str | None = None) -> Manifest: ...


@dataclass(frozen=True)
class BundleEntry:
    name: str
    version: str
    path: Path | str  # a URL for a bundle in a remote store
    manifest: Manifest | None  # None when the bundle could not be read
    problem: str | None = None  # why, in one line

    @property
    def speedup_p50(self) -> float | None:
        """Batch-1 p50 speed-up of the default variant vs PyTorch eager."""
        if self.manifest is None:
            return None
        sp = self.manifest.variant().speedup or {}
        value = sp.get("p50")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def parity_ok(self) -> bool | None:
        """Whether every variant passed parity (None: unreadable)."""
        if self.manifest is None:
            return None
        return all(bool((v.parity or {}).get("passed")) for v in self.manifest.variants)


def list_bundles(
    store: StoreLike | str | os.PathLike[str], *, latest_only: bool = False
) -> list[BundleEntry]:
    """Every version of every bundle (or the latest of each), names and versions ascending."""
    st: StoreLike = Store(store) if isinstance(store, (str, os.PathLike)) else store
    out = []
    for name in st.names():
        versions = st.versions(name)
        for version in versions[-1:] if latest_only else versions:
            root = st.root
            path: Path | str = (
                root / name / version if isinstance(root, Path) else f"{root}/{name}/{version}"
            )
            try:
                out.append(BundleEntry(name, version, path, st.manifest(name, version)))
            except (LabkitError, OSError) as exc:
                out.append(BundleEntry(name, version, path, None, str(exc)))
    return out
