"""What a refused version's directory holds, cheaply, so it is retried only when that changes.

``content_stamp``: a digest of file names and contents (touching files is not a change), re-read
only when a file's size, inode, mtime or ctime moved. ``stat_stamp``: names, types, sizes and
times only, never opening a file, for a version whose loading got stuck (reading it again
could block again). Neither ever blocks on a file that is not a regular file: entries are
``lstat``-ed, never followed, and a regular file is opened ``O_NONBLOCK | O_NOFOLLOW`` and
checked with ``fstat`` on the descriptor before it is read; a FIFO, socket, device or
symlink contributes its name and type only.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

__all__ = ["StampCache", "content_stamp", "stat_stamp"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
Entry = tuple[str, int, int, int, int, int]  # path, mode, size, inode, mtime_ns, ctime_ns


def _entries(path: Path) -> list[Entry]:
    found: list[Entry] = []
    for folder, dirs, files in os.walk(path, followlinks=False):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue  # vanished while listing
            rel = os.path.relpath(full, path)
            found.append((rel, st.st_mode, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
    return found


def stat_stamp(path: Path) -> str:
    """Names, types, sizes and times of everything under ``path``; opens nothing."""
    digest = hashlib.sha256(b"stat\0")
    for entry in _entries(path):
        digest.update(repr(entry).encode() + b"\0")
    return "stat:" + digest.hexdigest()


def _read_regular(full: Path, digest: hashlib._Hash) -> None:
    fd = os.open(full, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped after lstat: do not read it
            digest.update(b"<not a regular file>")
            return
        while block := os.read(fd, 1 << 20):
            digest.update(block)
    finally:
        os.close(fd)


class StampCache:
    """Content stamps of version directories, re-read only when their stat entries move."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[list[Entry], str]] = {}

    def content_stamp(self, path: Path) -> str:
        entries = _entries(path)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == entries:
            return cached[1]
        digest = hashlib.sha256(b"content\0")
        for rel, mode, *_ in entries:
            digest.update(rel.encode() + b"\0")
            if stat.S_ISREG(mode):
                try:
                    _read_regular(path / rel, digest)
                except OSError as exc:  # unreadable now: part of what it holds
                    digest.update(f"<{type(exc).__name__}>".encode())
            else:
                digest.update(f"<mode {stat.S_IFMT(mode):o}>".encode())
            digest.update(b"\0")
        stamp = "content:" + digest.hexdigest()
        self._cache[path] = (entries, stamp)
        return stamp

    def keep_only(self, paths: set[Path]) -> None:
        """Forget directories no longer in the store (the cache stays bounded)."""
        for path in [p for p in self._cache if p not in paths]:
            del self._cache[path]


def content_stamp(path: Path) -> str:
    return StampCache().content_stamp(path)
