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

__all__ = ["StoreSource", "StoreUnavailable", "fingerprint"]


class StoreUnavailable(StoreError):
    """The store root cannot be listed right now; what is loaded keeps serving."""


_digests: dict[Path, tuple[tuple[object, ...], str]] = {}


def fingerprint(path: Path) -> str:
    """Digest of a bundle directory's file names and contents (not mtimes: a refused version
    is retried when what is in it changes, not when something merely touches it). Re-read
    only when a file's size, inode, mtime or ctime moved (ctime cannot be set back by hand)."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    stats = tuple(
        (str(f), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        for f in files
        for st in [f.stat()]
    )
    cached = _digests.get(path)
    if cached is not None and cached[0] == stats:
        return cached[1]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    _digests[path] = (stats, digest.hexdigest())
    return digest.hexdigest()


class StoreSource:
    def __init__(self, location: str | os.PathLike[str]) -> None:
        from labkit.runtime.remote import open_store

        self.remote = is_remote(location)
        self.store: Any = open_store(location)  # Store | RemoteStore
        self.label = str(self.store.root)

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
            return {n: self.store.versions(n) for n in self.store.names()}
        try:
            index: dict[str, list[str]] = self.store.index()
        except Exception as exc:  # noqa: BLE001 - network, credentials, throttling: retry later
            raise StoreUnavailable(f"store {self.label} cannot be listed: {exc}") from exc
        return index

    def path(self, name: str, version: str) -> Path:
        """A local directory holding the version (remote: pulled, staged and verified)."""
        if self.remote:
            local: Path = self.store.local_path(name, version)
            return local
        return Path(self.store.root) / name / version

    def stamp(self, name: str, version: str) -> str:
        """Changes when the version's content does (its files; remotely its manifest and
        signature, which pin every other file)."""
        if not self.remote:
            return fingerprint(Path(self.store.root) / name / version)
        digest = hashlib.sha256()
        for rel in (MANIFEST_NAME, SIGNATURE_NAME):
            try:
                digest.update(self.files.read(f"{name}/{version}/{rel}", 1 << 20))
            except FileNotFoundError:
                digest.update(b"\0absent")
        return digest.hexdigest()
