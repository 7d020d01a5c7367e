"""[modes]: bundles are published 0755 (folders) / 0644 (files) whatever the umask, so
another service user can read them and nobody else can write them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from bundle_attack_tools import leak_bundle

from labkit.bundle.writer import DIR_MODE, FILE_MODE


@pytest.fixture(params=[0o077, 0o000, 0o022], ids=["umask-077", "umask-000", "umask-022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for p in root.rglob("*"):
        found[p.relative_to(root).as_posix()] = stat.S_IMODE(os.stat(p).st_mode)
    return found


def test_bundle_modes_ignore_the_umask(tmp_path: Path, umask: int) -> None:
    bundle = leak_bundle(tmp_path / "store")
    modes = _modes(bundle)
    assert {"models", "golden", "manifest.json", "models/fp32.onnx"} <= set(modes)
    for rel, mode in modes.items():
        want = DIR_MODE if (bundle / rel).is_dir() else FILE_MODE
        assert mode == want, (rel, oct(mode), oct(umask))
        assert not mode & (stat.S_IWGRP | stat.S_IWOTH)
    assert stat.S_IMODE(os.stat(bundle.parent).st_mode) == DIR_MODE  # NAME folder it made


def test_pipeline_bundles_are_world_readable(tiny_store: Path) -> None:
    bundle = tiny_store / "tiny" / "1.0.0"
    for rel, mode in _modes(bundle).items():
        assert mode & stat.S_IROTH, (rel, oct(mode))
        assert not mode & (stat.S_IWGRP | stat.S_IWOTH), (rel, oct(mode))
