"""Moving bundles between this host and a remote store, never trusting the remote.

``fetch`` pulls one version into the store's local cache: the manifest first (strict, size
capped), then exactly the files it lists, each streamed with its size as a cap and hashed as
it arrives, into a staging directory that is fsynced, verified (every rule of the bundle
format) and renamed into place. What is not listed is never downloaded. ``load`` and
``serve`` verify the cached copy again, and check signatures on it.

``push`` publishes a verified local bundle: every listed file (and ``signature.sig``) is
uploaded under ``NAME/VERSION/``, leftovers of an interrupted push are removed, and the
manifest is written **last**, only if absent. The manifest is the commit marker: readers
list a version only when it exists, so an upload cut anywhere before it is invisible, and
of two pushers of one version only one commits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from labkit.bundle import Store
from labkit.bundle.integrity import MAX_FILE_BYTES, MAX_TOTAL_BYTES, verify
from labkit.bundle.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, SIGNATURE_NAME, Manifest
from labkit.bundle.writer import STAGING, commit_stage, new_stage, write_file
from labkit.errors import IntegrityError, StoreError
from labkit.runtime.signing import MAX_SIGNATURE_BYTES

__all__ = ["copy_into", "fetch", "push"]

log = logging.getLogger("labkit.runtime")


class RemoteStore(Protocol):
    """What pulling and pushing need of :class:`labkit.runtime.remote.RemoteStore` (which
    calls into this module, so it is named here by shape rather than imported)."""

    url: str
    fs: Any
    files: Any  # labkit.runtime.remote.RemoteFiles
    cache: Store  # the local cache's store

    def manifest_bytes(self, name: str, version: str) -> bytes: ...


_CHUNK = 1 << 20


def _remote_signature(store: RemoteStore, prefix: str) -> bytes | None:
    try:
        return store.files.read(f"{prefix}/{SIGNATURE_NAME}", MAX_SIGNATURE_BYTES)
    except FileNotFoundError:
        return None


def _remote_manifest(store: RemoteStore, prefix: str) -> bytes | None:
    try:
        return store.files.read(f"{prefix}/{MANIFEST_NAME}", MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        return None


def _local_bytes(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _download(store: RemoteStore, rel: str, dest: Path, sha256: str, size: int) -> None:
    """Stream one listed file, refusing it as soon as it is longer than listed."""
    digest, got = hashlib.sha256(), 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    store.fs.invalidate_cache(store.files.full(rel))
    with store.fs.open(store.files.full(rel), "rb") as src, open(dest, "xb") as out:
        while chunk := src.read(min(_CHUNK, size + 1 - got)):
            got += len(chunk)
            if got > size:
                raise IntegrityError(f"{rel!r} in {store.url} is longer than listed", rule="digest")
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if got != size or digest.hexdigest() != sha256:
        raise IntegrityError(
            f"{rel!r} in {store.url} does not match its manifest entry (size {got}, "
            f"sha256 {digest.hexdigest()[:12]}…)",
            rule="digest",
        )


def fetch(store: RemoteStore, name: str, version: str) -> Path:
    """The local, verified copy of ``name/version``: reused when its manifest and signature
    are those of the remote, else pulled again."""
    prefix = f"{name}/{version}"
    manifest_bytes = store.manifest_bytes(name, version)
    manifest = Manifest.from_json(manifest_bytes)
    if (manifest.name, manifest.version) != (name, version):
        raise StoreError(f"{store.url}/{prefix} holds {manifest.name} {manifest.version}")
    signature = _remote_signature(store, prefix)
    target = store.cache.root / name / version
    if _local_bytes(target / MANIFEST_NAME) == manifest_bytes and (
        _local_bytes(target / SIGNATURE_NAME) == signature
    ):
        return target
    total = sum(f.size for f in manifest.files)
    if total > MAX_TOTAL_BYTES or any(f.size > MAX_FILE_BYTES for f in manifest.files):
        raise IntegrityError(f"{store.url}/{prefix} is over the size caps", rule="size")
    store.cache.root.mkdir(parents=True, exist_ok=True)
    stage = new_stage(store.cache.root, name, version)
    try:
        for entry in manifest.files:
            _download(store, f"{prefix}/{entry.path}", stage / entry.path, entry.sha256, entry.size)
        write_file(stage / MANIFEST_NAME, manifest_bytes)
        if signature is not None:
            write_file(stage / SIGNATURE_NAME, signature)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if target.exists():  # an older copy (the signature landed since): set it aside first
        old = store.cache.root / STAGING / f"{os.getpid()}-replaced-{name}-{version}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        commit_stage(stage, target)
    except StoreError:  # another process pulled it at the same moment: use theirs if same
        if _local_bytes(target / MANIFEST_NAME) != manifest_bytes:
            raise
    log.info("pulled %s/%s into %s", store.url, prefix, target)
    return target


def push(
    bundle: str | os.PathLike[str],
    store: RemoteStore,
    *,
    on_file: Callable[[str], None] | None = None,
) -> tuple[str, bool]:
    """Publish a local bundle; returns (its URL, whether anything was committed). A version
    already there with the same manifest is left alone (its signature added if new)."""
    vb = verify(bundle)
    m = vb.manifest
    prefix = f"{m.name}/{m.version}"
    url = f"{store.url}/{prefix}"
    manifest_bytes = (vb.root / MANIFEST_NAME).read_bytes()
    if Manifest.from_json(manifest_bytes) != m:
        raise StoreError(f"{vb.root / MANIFEST_NAME} changed while pushing it; run again")
    signature = _local_bytes(vb.root / SIGNATURE_NAME)
    existing = _remote_manifest(store, prefix)
    if existing is not None:
        if existing != manifest_bytes:
            raise StoreError(
                f"{url} exists with another manifest; versions are never overwritten "
                "(hand the model off again for a new version)"
            )
        if signature is not None and _remote_signature(store, prefix) != signature:
            store.fs.pipe_file(store.files.full(f"{prefix}/{SIGNATURE_NAME}"), signature)
            return url, True
        return url, False
    uploads = [(f.path, vb.read(f.path)) for f in m.files]  # re-hashed as read
    if signature is not None:
        uploads.append((SIGNATURE_NAME, signature))
    for rel, data in uploads:
        # Another pusher may commit this version meanwhile: stop before overwriting its files
        if _remote_manifest(store, prefix) not in (None, manifest_bytes):
            raise _raced(url)
        store.fs.pipe_file(store.files.full(f"{prefix}/{rel}"), data)
        if on_file is not None:
            on_file(rel)
    _remove_leftovers(store, prefix, {rel for rel, _ in uploads})
    if not store.files.create(f"{prefix}/{MANIFEST_NAME}", manifest_bytes):
        if _remote_manifest(store, prefix) == manifest_bytes:
            return url, False  # the same bundle, committed by another pusher
        raise _raced(url)
    return url, True


def _raced(url: str) -> StoreError:
    return StoreError(
        f"another bundle was committed as {url} while this push was uploading; files of "
        f"this push may have replaced some of it, which readers then refuse ([digest]): "
        f"check it with 'handoff verify {url}'"
    )


def _remove_leftovers(store: RemoteStore, prefix: str, keep: set[str]) -> None:
    """Objects under an uncommitted version that this bundle does not list (an earlier,
    interrupted push of something else) would sit unlisted inside it: delete them."""
    root = store.files.full(prefix)
    store.fs.invalidate_cache(root)
    try:
        found = store.fs.find(root)
    except FileNotFoundError:
        return
    for path in found:
        rel = str(path)[len(root) + 1 :]
        if rel not in keep:
            store.fs.rm_file(path)


def copy_into(bundle: str | os.PathLike[str], store_root: Path) -> tuple[Path, bool]:
    """``push`` into a local store: the bytes verified here, staged, fsynced, verified again
    and renamed into ``STORE/NAME/VERSION`` (the writer's rule)."""
    vb = verify(bundle)
    m = vb.manifest
    target = Path(store_root) / m.name / m.version
    manifest_bytes = (vb.root / MANIFEST_NAME).read_bytes()
    signature = _local_bytes(vb.root / SIGNATURE_NAME)
    if target.exists():
        if _local_bytes(target / MANIFEST_NAME) != manifest_bytes:
            raise StoreError(f"{target} exists with another manifest; never overwritten")
        return target, False
    stage = new_stage(Path(store_root), m.name, m.version)
    try:
        files = [(f.path, vb.read(f.path)) for f in m.files]
        files.append((MANIFEST_NAME, manifest_bytes))
        if signature is not None:
            files.append((SIGNATURE_NAME, signature))
        for rel, data in files:
            write_file(stage / rel, data)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return commit_stage(stage, target), True
