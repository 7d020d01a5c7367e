"""Writing a bundle atomically ([immutable]): staging dir, fsync, verify, rename.

A crash, an exception or Ctrl-C at any point leaves either the complete bundle or none. A
hard kill can leave a staging directory under ``STORE/.staging``; it is not a bundle (the
store never lists it) and the next write removes stale ones.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from labkit.bundle.integrity import verify
from labkit.bundle.manifest import MANIFEST_NAME, Manifest
from labkit.bundle.parts import FileEntry
from labkit.bundle.paths import check_path
from labkit.errors import StoreError

STAGING = ".staging"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# [modes]: a bundle is read by other service users (a server, a CI job), so it is published
# world-readable, never group/world-writable. Set with chmod, not left to the umask (which
# could only remove bits, and mkdtemp makes 0700 regardless of it).
DIR_MODE = 0o755
FILE_MODE = 0o644


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(store_root: Path) -> None:
    staging = store_root / STAGING
    if not staging.is_dir():
        return
    for entry in staging.iterdir():
        pid = entry.name.split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def new_stage(store_root: Path, name: str, version: str) -> Path:
    """A fresh staging directory for ``name/version`` under ``store_root/.staging``."""
    (store_root / STAGING).mkdir(parents=True, exist_ok=True)
    clean_stale_staging(store_root)
    return Path(
        tempfile.mkdtemp(prefix=f"{os.getpid()}-{name}-{version}-", dir=store_root / STAGING)
    )


def commit_stage(stage: Path, target: Path, modes: Mapping[str, int] | None = None) -> Path:
    """Publish a complete staging directory as ``target``: [modes], every file and folder
    fsynced, verified, then one rename. On any failure the stage is removed and nothing
    appears at ``target``. The files must already be fsynced (``write_file`` does).
    ``modes``: a file's own mode by bundle path (a copied source, [source]), never more
    than FILE_MODE: a notebook only its owner could read is not published to everyone."""
    modes = modes or {}
    try:
        folders = {stage}
        for dirpath, dirnames, filenames in os.walk(stage):
            folders.update(Path(dirpath) / d for d in dirnames)
            for fname in filenames:
                rel = (Path(dirpath) / fname).relative_to(stage).as_posix()
                os.chmod(Path(dirpath) / fname, FILE_MODE & modes.get(rel, FILE_MODE))
        for folder in folders:
            os.chmod(folder, DIR_MODE)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(folder)
        verify(stage)
        if not target.parent.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(target.parent, DIR_MODE)  # a NAME folder this writer made: [modes]
        try:
            os.rename(stage, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise StoreError(
                    f"{target} was written by another handoff at the same "
                    "time; run the handoff again to get the next version"
                ) from None
            raise
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return target


def write_bundle(
    store_root: Path,
    name: str,
    version: str,
    files: dict[str, bytes],
    manifest: Manifest,
    *,
    modes: Mapping[str, int] | None = None,
) -> Path:
    """Write ``files`` plus ``manifest`` (named, versioned and listing them) into
    ``store_root/name/version``; the manifest's own ``files`` are replaced. ``modes``
    narrows a file's published mode (a copied source keeps its own read bits)."""
    store_root = Path(store_root)
    target = store_root / name / version
    if target.exists():
        raise StoreError(f"{target} already exists; bundles are never overwritten")
    listing = tuple(
        FileEntry(check_path(rel), hashlib.sha256(data).hexdigest(), len(data))
        for rel, data in sorted(files.items())
    )
    manifest_bytes = replace(manifest, name=name, version=version, files=listing).to_json()
    Manifest.from_json(manifest_bytes)  # refuse a bad manifest before anything is written

    stage = new_stage(store_root, name, version)
    try:
        for rel, data in files.items():
            write_file(stage / rel, data)
        write_file(stage / MANIFEST_NAME, manifest_bytes)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return commit_stage(stage, target, modes)
