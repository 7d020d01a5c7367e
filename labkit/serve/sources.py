"""Where a server's versions come from: a store directory, or a store URL behind fsspec.

The repository asks three things of a store: which versions it holds now, a local directory
for one of them (a remote version is pulled into the cache, staged and verified first; the
repository's ``load`` verifies it again), and a stamp that changes when a version's content
changes (a refused version is retried only then). Listing failures raise
:class:`StoreUnavailable`: what is loaded keeps serving.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from labkit.bundle.location import is_remote
from labkit.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME
from labkit.errors import StoreError

__all__ = ["StoreSource", "StoreUnavailable"]


class StoreUnavailable(StoreError):
    """The store root cannot be listed right now; what is loaded keeps serving."""


class StoreSource:
    def __init__(self, location: str | os.PathLike[str]) -> None:
        from labkit.runtime.remote import open_store

        self.remote = is_remote(location)
        self.store: Any = open_store(location)  # Store | RemoteStore
        self.label = str(self.store.root)
        self.last_listing: dict[str, list[str]] = {}  # what versions() saw last

    @property
    def files(self) -> Any:
        """The store's :class:`labkit.bundle.storefiles.Files` (aliases live there)."""
        return self.store.files

    def versions(self) -> dict[str, list[str]]:
        """Every version per model name; StoreUnavailable when the root cannot be listed."""
        if not self.remote:
            root = Path(self.store.root)
            if not root.is_dir():  # unmounted or moved
                raise StoreUnavailable(f"store root {root} is not a directory")
            index = {n: self.store.versions(n) for n in self.store.names()}
        else:
            try:
                index = self.store.index()
            except Exception as exc:  # noqa: BLE001 - network, credentials, throttling
                raise StoreUnavailable(f"store {self.label} cannot be listed: {exc}") from exc
        self.last_listing = index
        return index

    def path(self, name: str, version: str) -> Path:
        """A local directory holding the version (remote: pulled, staged and verified)."""
        if self.remote:
            local: Path = self.store.local_path(name, version)
            return local
        return Path(self.store.root) / name / version

    def stamp(self, name: str, version: str) -> str:
        """A remote version's stamp: it changes when its manifest or signature does (which
        pin every other file). Local versions are stamped by the repository's StampCache."""
        digest = hashlib.sha256()
        for rel in (MANIFEST_NAME, SIGNATURE_NAME):
            try:
                digest.update(self.files.read(f"{name}/{version}/{rel}", 1 << 20))
            except FileNotFoundError:
                digest.update(b"\0absent")
        return digest.hexdigest()
