"""Helpers for the signing tests: EC key pairs made in the test, tiny real bundles made by
the real pipeline (built once per test session), and the handoff CLI as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_BUILT: dict[str, Path] = {}


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


def make_keys(folder: Path, name: str) -> KeyPair:
    """A fresh P-256 key pair written as PEM (what `openssl ecparam -genkey` would give)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private, public)


def built_store(factory: pytest.TempPathFactory) -> Path:
    """A store with mlp 1.0.0 and 1.1.0 (same architecture, new weights), fp32 only, built
    once per session; copy what you change."""
    if "store" not in _BUILT:
        torch = pytest.importorskip("torch")
        import labkit
        from labkit.pipeline import HandoffOptions, run

        root = factory.mktemp("signing-store")
        for seed in (0, 1):
            torch.manual_seed(seed)
            mlp = torch.nn.Sequential(
                torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
            ).eval()
            spec = labkit.register(mlp, (torch.randn(2, 8),), name="mlp")
            run(
                spec,
                store=root,
                options=HandoffOptions(quantize=False, benchmark=False),
                sign_key="",
            )
        _BUILT["store"] = root
    return _BUILT["store"]


def copy_bundle(store: Path, version: str, dest: Path) -> Path:
    target = dest / "mlp" / version
    shutil.copytree(store / "mlp" / version, target)
    return target


def handoff(
    *argv: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handoff", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("handoff: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]
