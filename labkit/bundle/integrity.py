"""Verification of a bundle on disk, before anything in it is used.

Every check here runs before an ONNX Runtime session exists: a session that reads a model
file follows links and external-data paths on its own, so the bundle must be proven sound
first, and the bytes handed to the session are the bytes that were hashed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.bundle.content import ContentChecks
from labkit.bundle.files import read_file, sha256_of
from labkit.bundle.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, SIGNATURE_NAME, Manifest
from labkit.bundle.paths import check_path
from labkit.errors import BundleNotFoundError, FormatError, IntegrityError

MAX_FILE_BYTES = 4 << 30
MAX_TOTAL_BYTES = 16 << 30
MAX_ENTRIES = 10_000


def _check_entry(full: Path, rel: str) -> os.stat_result:
    st = os.lstat(full)
    if stat.S_ISLNK(st.st_mode):
        raise IntegrityError(
            f"{rel!r} is a symbolic link; bundles hold regular files only", rule="link"
        )
    if stat.S_ISDIR(st.st_mode):
        return st
    if not stat.S_ISREG(st.st_mode):
        raise IntegrityError(f"{rel!r} is not a regular file or directory", rule="link")
    if st.st_nlink != 1:
        raise IntegrityError(
            f"{rel!r} has {st.st_nlink} hard links; a hard link may point outside the bundle",
            rule="link",
        )
    return st


def _walk(root: Path) -> dict[str, int]:
    """Relative path → size of every file under root, refusing links and odd entries."""
    found: dict[str, int] = {}
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                rel = f"{prefix}{entry.name}"
                st = _check_entry(Path(entry.path), rel)
                if stat.S_ISDIR(st.st_mode):
                    stack.append((Path(entry.path), rel + "/"))
                else:
                    found[rel] = st.st_size
                if len(found) + len(stack) > MAX_ENTRIES:
                    raise IntegrityError(f"bundle has more than {MAX_ENTRIES} entries", rule="size")
    return found


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a regular file (read from one checked descriptor: no FIFO, no link)."""
    return sha256_of(path, single_link=False)


def _no_bundle(root: Path) -> BundleNotFoundError:
    return BundleNotFoundError(f"no bundle at {root}: the directory does not exist", rule="listing")


def _not_a_bundle(root: Path) -> BundleNotFoundError:
    return BundleNotFoundError(
        f"{root} has no {MANIFEST_NAME}; is this a labkit bundle?", rule="listing"
    )


def read_manifest(root: Path) -> Manifest:
    """Read and validate manifest.json only ([manifest-size], [json], [schema])."""
    try:
        data = read_file(
            root,
            MANIFEST_NAME,
            max_bytes=MAX_MANIFEST_BYTES,
            too_big=FormatError,
            size_rule="manifest-size",
        )
    except FileNotFoundError:
        if not os.path.lexists(root):
            raise _no_bundle(root) from None
        raise _not_a_bundle(root) from None
    except NotADirectoryError:
        raise _not_a_bundle(root) from None
    return Manifest.from_json(data)


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose every file matched its manifest at verification time."""

    root: Path
    manifest: Manifest
    _digests: dict[str, tuple[str, int]] = field(repr=False)

    def read(self, rel: str) -> bytes:
        """The bytes of a listed file, hashed again as read (closes the check/use gap)."""
        check_path(rel)
        if rel not in self._digests:
            raise IntegrityError(f"{rel!r} is not listed in the manifest", rule="listing")
        digest, size = self._digests[rel]
        data = read_file(self.root, rel, max_bytes=MAX_FILE_BYTES, size=size)
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"{rel!r} changed after verification", rule="digest")
        return data

    def read_npz(self, rel: str) -> dict[str, Any]:
        """A golden file's arrays, read within the bounds its signature sets ([golden])."""
        from labkit.bundle.npz import golden_specs, read_npz

        if rel not in (self.manifest.golden.inputs, self.manifest.golden.expected):
            raise IntegrityError(f"{rel!r} is not a golden file of this bundle", rule="golden")
        return read_npz(
            self.read(rel), rel, golden_specs(self.manifest, rel), rows=self.manifest.golden.rows
        )


def verify(path: str | os.PathLike[str]) -> VerifiedBundle:
    """Check every rule of docs/bundle-format.md; raise IntegrityError/FormatError naming it."""
    root = Path(path)
    try:
        rst = os.lstat(root)
    except FileNotFoundError:
        raise _no_bundle(root) from None
    if stat.S_ISLNK(rst.st_mode) or not stat.S_ISDIR(rst.st_mode):
        raise IntegrityError(f"{root} must be a real directory (not a link or a file)", rule="link")
    manifest = read_manifest(root)
    on_disk = _walk(root)
    on_disk.pop(MANIFEST_NAME, None)
    on_disk.pop(SIGNATURE_NAME, None)  # signs over the listing, so cannot be in it
    listed = {f.path: (f.sha256, f.size) for f in manifest.files}
    unlisted = sorted(set(on_disk) - set(listed))
    if unlisted:
        raise IntegrityError(
            f"files not listed in the manifest: {', '.join(unlisted[:5])}", rule="listing"
        )
    missing = sorted(set(listed) - set(on_disk))
    if missing:
        raise IntegrityError(f"listed files are missing: {', '.join(missing[:5])}", rule="listing")
    total = 0
    for rel, (_digest, size) in listed.items():
        if on_disk[rel] != size:
            raise IntegrityError(
                f"{rel!r} is {on_disk[rel]} bytes, manifest says {size}", rule="digest"
            )
        if size > MAX_FILE_BYTES:
            raise IntegrityError(f"{rel!r} is over the {MAX_FILE_BYTES}-byte file cap", rule="size")
        total += size
    if total > MAX_TOTAL_BYTES:
        raise IntegrityError(
            f"bundle holds {total} bytes, over the cap of {MAX_TOTAL_BYTES}", rule="size"
        )
    content = ContentChecks(manifest)
    for rel in content.order(listed):
        digest, size = listed[rel]
        # Models and golden files are checked inside ([onnx], [external-data], [signature],
        # [golden]) on the very bytes that were hashed.
        # Read from one descriptor checked with fstat (regular, one link, the listed size):
        # a file swapped for a FIFO or a link after the walk is refused, never waited on.
        data: bytes | None = None
        if content.wants(rel):
            data = read_file(root, rel, max_bytes=MAX_FILE_BYTES, size=size)
            actual = hashlib.sha256(data).hexdigest()
        else:
            actual = sha256_of(root, rel, size=size)
        if actual != digest:
            raise IntegrityError(
                f"{rel!r} has sha256 {actual[:12]}…, manifest says "
                f"{digest[:12]}…: the file was modified or corrupted",
                rule="digest",
            )
        if data is not None:
            content.check(rel, data)
    return VerifiedBundle(root=root, manifest=manifest, _digests=listed)
