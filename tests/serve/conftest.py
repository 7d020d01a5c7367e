"""Fixtures for the serving tests: tiny real bundles, built once per session by the real
pipeline, and a shared real server (a subprocess on 127.0.0.1, random free port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import Bundles, Server, build_store, running


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("bundles")
    return Bundles(root, build_store(root))


@pytest.fixture(scope="session")
def main_store(bundles: Bundles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundles.store_with(
        tmp_path_factory.mktemp("main-store"), "mlp-1.0.0", "mlp-1.1.0", "two"
    )


@pytest.fixture(scope="session")
def server(main_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the protocol and bad-input tests (read-only use)."""
    with running(main_store, tmp_path_factory.mktemp("logs"), "--reload-interval", "0") as s:
        yield s
