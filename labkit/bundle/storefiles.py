"""What the store's mutable records (aliases) need from where the store lives.

A store may be a local directory or an object store behind fsspec
(``labkit.runtime.remote``); both give the three operations below, so the alias rules are
written once. ``create`` is the one write: exclusive (it never replaces a file), which makes
moving an alias a compare-and-swap on its next generation number.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Protocol

from labkit.bundle.writer import DIR_MODE, FILE_MODE, fsync_dir
from labkit.errors import StoreError

__all__ = ["Files", "LocalFiles"]


class Files(Protocol):
    """Paths are relative to the store root, ``/``-separated."""

    def listdir(self, rel: str) -> list[str]:
        """Names directly under ``rel`` (files and folders); ``[]`` when it does not exist."""
        ...

    def read(self, rel: str, limit: int) -> bytes:
        """The file's bytes; StoreError past ``limit`` bytes, FileNotFoundError if absent."""
        ...

    def create(self, rel: str, data: bytes) -> bool:
        """Write a new file whole or not at all; False (nothing written) if it exists."""
        ...


def _makedirs(path: Path) -> None:
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        os.chmod(folder, DIR_MODE)


class LocalFiles:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def listdir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self.root / rel))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def read(self, rel: str, limit: int) -> bytes:
        path = self.root / rel
        if path.is_symlink():
            raise StoreError(f"{path} is a symbolic link; store records are regular files")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise StoreError(f"{path} is over {limit} bytes; not a labkit store record")
        return data

    def create(self, rel: str, data: bytes) -> bool:
        """Temp file + fsync, then ``link`` into place: like ``rename`` a reader sees the
        whole file or none, but unlike ``rename`` it refuses to replace one that exists."""
        path = self.root / rel
        _makedirs(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, FILE_MODE)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise StoreError(
                        f"{path.parent} does not support hard links, which labkit uses to "
                        "write store records without replacing one; keep the store on a "
                        "local POSIX filesystem or an object store"
                    ) from None
                raise
        finally:
            os.unlink(tmp)
        fsync_dir(path.parent)
        return True
