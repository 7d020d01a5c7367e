"""Reading a file that someone else may control, without blocking, following a link or
reading more than was promised ([link], [size]): the one home for every reader of bundle
files (verify, load, golden ``.npz``, the manifest, ``signature.sig``, listings, the serve
watcher) and of a handoff's source file.

A path is checked *on the descriptor that is read*, never on the name beforehand: checking a
name (``lstat``) and then opening it by name leaves a gap in which the file can be swapped
for a FIFO (``open`` then blocks forever), a symbolic link (the read escapes the bundle) or
something bigger. So every file is opened with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO opens at
once instead of waiting for a writer; a link is refused by the kernel), every directory
below the bundle root with ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent's
descriptor (no link anywhere below the root is followed), then ``fstat`` on the descriptor
says whether it is a regular file, how many hard links it has and how big it is, before a
byte is read, and the bytes come from that same descriptor.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat

from labkit.errors import BundleError, IntegrityError

__all__ = ["file_kind", "open_file", "read_file", "read_file_stat", "sha256_of"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_CHUNK = 1 << 20


def file_kind(mode: int) -> str:
    """What an entry is, in words, for a refusal."""
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _link_refusal(what: str) -> IntegrityError:
    return IntegrityError(
        f"{what!r} is a symbolic link (or lies under one); bundles hold regular files only",
        rule="link",
    )


def open_file(root: str | os.PathLike[str], rel: str | None = None) -> int:
    """A read-only descriptor of ``root/rel`` (or of ``root`` itself when ``rel`` is None).

    With ``rel``, each folder of ``rel`` is opened relative to the one above it, refusing
    links, so the file is the one inside ``root`` whatever is swapped meanwhile. Nothing is
    checked about the file yet: see :func:`read_file`. Raises FileNotFoundError as ``open``
    does, IntegrityError [link] for a link."""
    what = rel if rel is not None else str(root)
    if rel is None:
        try:
            return os.open(root, _FILE_FLAGS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _link_refusal(what) from None
            raise
    parts = rel.split("/")
    dir_fd = os.open(root, _DIR_FLAGS & ~_NOFOLLOW)  # the root itself may sit under links
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _link_refusal(what) from None
                raise
            os.close(dir_fd)
            dir_fd = next_fd
        try:
            return os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _link_refusal(what) from None
            raise
    finally:
        os.close(dir_fd)


def _checked(
    fd: int,
    what: str,
    *,
    max_bytes: int | None,
    size: int | None,
    single_link: bool,
    too_big: type[BundleError],
    size_rule: str,
) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise IntegrityError(
            f"{what!r} is {file_kind(st.st_mode)}, not a regular file", rule="link"
        )
    if single_link and st.st_nlink != 1:
        raise IntegrityError(
            f"{what!r} has {st.st_nlink} hard links; a hard link may point outside the bundle",
            rule="link",
        )
    if max_bytes is not None and st.st_size > max_bytes:
        raise too_big(
            f"{what!r} is {st.st_size} bytes, over the cap of {max_bytes}", rule=size_rule
        )
    if size is not None and st.st_size != size:
        raise IntegrityError(f"{what!r} is {st.st_size} bytes, manifest says {size}", rule="digest")
    return st


def _read_fd(fd: int, limit: int, what: str) -> bytes:
    """Up to ``limit`` bytes in one buffer (a model of gigabytes is not held twice); a
    regular file never blocks, and O_NONBLOCK makes the rare regular-looking file that would
    (a kernel pseudo-file) fail instead of hanging."""
    with os.fdopen(fd, "rb", closefd=False) as f:
        data = f.read(limit)
    if data is None:
        raise IntegrityError(f"{what!r} would block on read; not a plain file", rule="link")
    return data


def read_file(
    root: str | os.PathLike[str],
    rel: str | None = None,
    *,
    max_bytes: int,
    size: int | None = None,
    single_link: bool = True,
    too_big: type[BundleError] = IntegrityError,
    size_rule: str = "size",
) -> bytes:
    """The bytes of regular file ``root/rel`` (see :func:`open_file`), at most ``max_bytes``.

    Refused before reading: not a regular file, more than one hard link (unless
    ``single_link=False``), over ``max_bytes`` (``too_big`` with ``size_rule``), or not
    exactly ``size`` bytes when given; refused after: a file that grew while being read."""
    data, _ = read_file_stat(
        root,
        rel,
        max_bytes=max_bytes,
        size=size,
        single_link=single_link,
        too_big=too_big,
        size_rule=size_rule,
    )
    return data


def read_file_stat(
    root: str | os.PathLike[str],
    rel: str | None = None,
    *,
    max_bytes: int,
    size: int | None = None,
    single_link: bool = True,
    too_big: type[BundleError] = IntegrityError,
    size_rule: str = "size",
) -> tuple[bytes, os.stat_result]:
    """:func:`read_file`, and the ``fstat`` of the descriptor it read (mode, size, owner)."""
    what = rel if rel is not None else str(root)
    fd = open_file(root, rel)
    try:
        st = _checked(
            fd,
            what,
            max_bytes=max_bytes,
            size=size,
            single_link=single_link,
            too_big=too_big,
            size_rule=size_rule,
        )
        data = _read_fd(fd, st.st_size + 1, what)
    finally:
        os.close(fd)
    if len(data) != st.st_size:
        raise IntegrityError(
            f"{what!r} changed size while being read ({st.st_size} bytes, then {len(data)})",
            rule="digest",
        )
    return data, st


def sha256_of(
    root: str | os.PathLike[str],
    rel: str | None = None,
    *,
    size: int | None = None,
    max_bytes: int | None = None,
    single_link: bool = True,
) -> str:
    """Hex SHA-256 of regular file ``root/rel``, read in chunks from one checked descriptor
    (the same refusals as :func:`read_file`); a file that grew meanwhile is refused."""
    what = rel if rel is not None else str(root)
    fd = open_file(root, rel)
    try:
        st = _checked(
            fd,
            what,
            max_bytes=max_bytes,
            size=size,
            single_link=single_link,
            too_big=IntegrityError,
            size_rule="size",
        )
        h, got = hashlib.sha256(), 0
        while chunk := os.read(fd, min(_CHUNK, st.st_size + 1 - got) or 1):
            h.update(chunk)
            got += len(chunk)
            if got > st.st_size:
                break
    finally:
        os.close(fd)
    if got != st.st_size:
        raise IntegrityError(
            f"{what!r} changed size while being read ({st.st_size} bytes, then {got})",
            rule="digest",
        )
    return h.hexdigest()
