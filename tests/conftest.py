"""Shared fixtures: tiny models built in-process and bundles made by the real pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one real bundle of a small MLP (fp32 + int8, quick benchmark)."""
    import torch

    import labkit
    from labkit.pipeline import BenchOptions, HandoffOptions, run

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
    x = torch.randn(40, 16)
    spec = labkit.register(model, x[:4], name="tiny", task="classification", parity_inputs=[x])
    store = tmp_path_factory.mktemp("store")
    run(spec, store=store, options=HandoffOptions(bench=BenchOptions.quick()))
    return store


@pytest.fixture()
def bundle(tiny_store: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle, free to be tampered with."""
    dst = tmp_path / "tiny" / "1.0.0"
    shutil.copytree(tiny_store / "tiny" / "1.0.0", dst)
    return dst
