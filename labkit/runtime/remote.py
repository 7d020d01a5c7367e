"""Stores behind fsspec (``s3://``, ``gs://`` …): listing, aliases, and where bundles land.

A remote store has the local layout (``STORE/NAME/VERSION/…``, ``STORE/NAME/.aliases/…``).
Object stores have no rename, so a version is **committed** by its ``manifest.json``, written
last and only if absent (``labkit.runtime.transfer.push``); readers here list a version
only when its manifest exists, so an interrupted upload never shows as a version.

Nothing from the remote is trusted: bundles are pulled into a local cache (one folder per
store, itself laid out as a store, so host profiles of ``handoff tune`` sit beside them),
staged, verified, then renamed into place; ``load`` and ``serve`` verify the cached copy
again before any session exists.

fsspec is imported here, lazily: ``pip install 'labkit[remote]'`` (S3 and S3-compatible
servers), ``'labkit[gcs]'`` (Google Cloud Storage). Credentials and endpoints
come from the backend's usual configuration (for S3: ``AWS_*`` variables or profiles,
``AWS_ENDPOINT_URL`` for an S3-compatible server).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from labkit.bundle import Store
from labkit.bundle.aliases import Alias, AliasEvent, read_alias, read_event
from labkit.bundle.location import is_remote, local_path
from labkit.bundle.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, NAME_RE, Manifest
from labkit.bundle.semver import Version, is_version
from labkit.errors import MissingDependencyError, StoreError

__all__ = ["RemoteFiles", "RemoteStore", "cache_root", "local_bundle", "open_store"]

CACHE_ENV = "LABKIT_CACHE"
# The driver a protocol needs, and the extra that installs it.
_DRIVERS = {"s3": ("s3fs", "remote"), "s3a": ("s3fs", "remote"), "gs": ("gcsfs", "gcs")}
_DRIVERS["gcs"] = _DRIVERS["gs"]


def open_fs(url: str) -> tuple[Any, str]:
    """(filesystem, root path inside it) for a URL; a missing package says what to install."""
    try:
        import fsspec
    except ImportError:
        raise MissingDependencyError("fsspec", "remote") from None
    protocol = url.split("://", 1)[0].lower()
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except ImportError:
        package, extra = _DRIVERS.get(protocol, (f"fsspec's {protocol} driver", "remote"))
        raise MissingDependencyError(package, extra) from None
    except ValueError as exc:
        raise StoreError(f"{url}: fsspec cannot open it ({exc})") from None
    return fs, str(root).rstrip("/")


def cache_root(url: str, cache: str | os.PathLike[str] | None = None) -> Path:
    """``$LABKIT_CACHE`` (else ``~/.cache/labkit``) ``/stores/<store-slug>-<hash>``."""
    if cache is None:
        env = os.environ.get(CACHE_ENV)
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = Path(env) if env else Path(xdg) / "labkit"
    else:
        base = Path(cache)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1]).strip("_")[:60]
    return base / "stores" / f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def _exists_error(exc: OSError) -> bool:
    # s3fs maps a failed If-None-Match to FileExistsError; older ones to EINVAL "Precondition"
    return isinstance(exc, FileExistsError) or "precondition" in str(exc).lower()


class RemoteFiles:
    """:class:`labkit.bundle.storefiles.Files` over fsspec."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs, self.root = fs, root

    def full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def listdir(self, rel: str) -> list[str]:
        path = self.full(rel)
        self.fs.invalidate_cache(path)  # a server polls: never answer from a stale listing
        try:
            entries = self.fs.ls(path, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = {str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries}
        names.discard(path.rstrip("/").rsplit("/", 1)[-1])
        return sorted(names)

    def read(self, rel: str, limit: int) -> bytes:
        self.fs.invalidate_cache(self.full(rel))  # its size/ETag may be from a stale listing
        with self.fs.open(self.full(rel), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise StoreError(f"{self.full(rel)} is over {limit} bytes; not a labkit store record")
        return bytes(data)

    def create(self, rel: str, data: bytes) -> bool:
        """Exclusive: S3 ``If-None-Match: *`` (s3fs ``mode="create"``); other backends do
        what their fsspec driver does for ``create`` (docs/serving.md says which are safe)."""
        try:
            self.fs.pipe_file(self.full(rel), data, mode="create")
        except OSError as exc:
            if _exists_error(exc):
                return False
            raise
        return True


class RemoteStore:
    """A store at a URL, with the local :class:`labkit.bundle.Store`'s read methods."""

    def __init__(self, url: str, *, cache: str | os.PathLike[str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.fs, root = open_fs(self.url)
        self.files = RemoteFiles(self.fs, root)
        self.cache = Store(cache_root(self.url, cache))
        self._records: dict[tuple[str, str, int], AliasEvent] = {}

    @property
    def root(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    def index(self) -> dict[str, list[str]]:
        """Every committed version by name, from one listing of the store."""
        self.fs.invalidate_cache(self.files.root)
        try:
            paths = self.fs.find(self.files.root)
        except FileNotFoundError:
            return {}
        found: dict[str, list[str]] = {}
        prefix = self.files.root + "/"
        for path in paths:
            parts = str(path)[len(prefix) :].split("/") if str(path).startswith(prefix) else []
            if (
                len(parts) == 3
                and parts[2] == MANIFEST_NAME
                and NAME_RE.fullmatch(parts[0])
                and is_version(parts[1])
            ):
                found.setdefault(parts[0], []).append(parts[1])
        return {n: sorted(vs, key=Version.parse) for n, vs in sorted(found.items())}

    def names(self) -> list[str]:
        return list(self.index())

    def versions(self, name: str) -> list[str]:
        return self.index().get(name, [])

    def latest(self, name: str) -> str | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def manifest_bytes(self, name: str, version: str) -> bytes:
        if not NAME_RE.fullmatch(name) or not is_version(version):
            raise StoreError(f"{name}/{version} is not NAME/VERSION")
        try:
            return self.files.read(f"{name}/{version}/{MANIFEST_NAME}", MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            raise StoreError(
                f"no version {version} of {name!r} in {self.url}; it has: "
                f"{', '.join(self.versions(name)) or 'none'}"
            ) from None

    def manifest(self, name: str, version: str | None = None) -> Manifest:
        version = version or self.latest(name)
        if version is None:
            raise StoreError(f"no bundle named {name!r} in {self.url}")
        return Manifest.from_json(self.manifest_bytes(name, version))

    def _record(self, model: str, alias: str, generation: int) -> AliasEvent:
        key = (model, alias, generation)
        if key not in self._records:  # a record is never rewritten: read each once
            self._records[key] = read_event(self.files, model, alias, generation)
        return self._records[key]

    def alias(self, name: str, alias: str) -> Alias | None:
        return read_alias(self.files, name, alias, reader=lambda g: self._record(name, alias, g))

    def aliases(self, name: str) -> dict[str, Alias]:
        from labkit.bundle.aliases import ALIAS_RE, ALIASES_DIR, RESERVED

        found = {}
        for alias in self.files.listdir(f"{name}/{ALIASES_DIR}"):
            if ALIAS_RE.fullmatch(alias) and alias not in RESERVED:
                got = self.alias(name, alias)
                if got is not None:
                    found[alias] = got
        return found

    def local_path(self, name: str, version: str) -> Path:
        """A verified copy in the local cache, pulled first if needed."""
        from labkit.runtime.transfer import fetch

        return fetch(self, name, version)


def open_store(
    location: str | os.PathLike[str], *, cache: str | os.PathLike[str] | None = None
) -> Store | RemoteStore:
    """A local :class:`Store` for a path or ``file://`` URL, else a :class:`RemoteStore`."""
    if is_remote(location):
        return RemoteStore(str(location), cache=cache)
    return Store(local_path(location))


def local_bundle(
    location: str | os.PathLike[str], *, cache: str | os.PathLike[str] | None = None
) -> Path:
    """A bundle's directory on this host: a local path as given, or a remote
    ``STORE/NAME/VERSION`` pulled into the cache (verified there)."""
    if not is_remote(location):
        return local_path(location)
    from labkit.bundle.location import split_bundle_url

    store_url, name, version = split_bundle_url(str(location))
    return RemoteStore(store_url, cache=cache).local_path(name, version)
