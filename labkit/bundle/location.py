"""Where a store or bundle lives: a local path, or a URL fsspec opens (``s3://``, ``gs://``).

Telling them apart needs no import of fsspec: the runtime's core install stays free of it.
``file://`` URLs are local paths, handled by the local code (rename, fsync) like plain ones.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from labkit.bundle.manifest import NAME_RE
from labkit.bundle.semver import is_version
from labkit.errors import StoreError

__all__ = ["is_remote", "local_path", "split_bundle_url"]

_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")


def scheme(location: str | os.PathLike[str]) -> str | None:
    found = _SCHEME.match(str(location)) if isinstance(location, str) else None
    return found.group(1).lower() if found else None


def is_remote(location: str | os.PathLike[str]) -> bool:
    """True for a URL other than ``file://`` (those go through fsspec)."""
    return scheme(location) not in (None, "file")


def local_path(location: str | os.PathLike[str]) -> Path:
    """A plain path or a ``file://`` URL as a Path."""
    if scheme(location) == "file":
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(str(location))
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"{location}: file:// URLs name a path on this host only")
        return Path(unquote(parts.path))
    if is_remote(location):
        raise StoreError(f"{location} is not a local path")
    return Path(location)


def split_bundle_url(url: str) -> tuple[str, str, str]:
    """``STORE/NAME/VERSION`` → (store URL, name, version), each checked."""
    store, _, rest = url.rstrip("/").rpartition("/")
    store, _, name = store.rpartition("/")
    version = rest
    if not store or not NAME_RE.fullmatch(name) or not is_version(version):
        raise StoreError(
            f"{url} is not STORE/NAME/VERSION (a bundle in a store, e.g. "
            "s3://bucket/models/mlp/1.2.0)"
        )
    return store, name, version
