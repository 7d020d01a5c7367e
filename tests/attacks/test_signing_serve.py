"""``handoff serve --trusted-key``: a real server on 127.0.0.1 serves only signed versions,
says which it refused and why, and picks a version up once it is signed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from signing_helpers import built_store, copy_bundle, make_keys

from labkit.runtime.signing import sign_bundle

pytest.importorskip("model_signing")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_helpers import running  # noqa: E402


def _ready(client: object, version: str) -> int:
    return int(client.get(f"/v2/models/mlp/versions/{version}/ready").status_code)  # type: ignore[attr-defined]


def test_serve_only_signed_versions(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    built = built_store(tmp_path_factory)
    keys = make_keys(tmp_path / "keys", "alice")
    other = make_keys(tmp_path / "keys", "mallory")
    store = tmp_path / "store"
    signed = copy_bundle(built, "1.0.0", store)
    unsigned = copy_bundle(built, "1.1.0", store)
    sign_bundle(signed, keys.private)
    with (
        running(
            store, tmp_path, "--trusted-key", str(keys.public), "--reload-interval", "0.5"
        ) as server,
        server.client() as c,
    ):
        assert _ready(c, "1.0.0") == 200
        assert _ready(c, "1.1.0") != 200
        meta = c.get("/v2/models/mlp").json()
        assert meta["versions"] == ["1.0.0"]
        logs = server.logs()
        assert "serving only bundles signed by: sha256:" in logs
        refused = [ln for ln in logs.splitlines() if "refused mlp 1.1.0" in ln]
        assert len(refused) == 1 and "[signature-trust]" in refused[0]
        assert "not signed" in refused[0]
        x = {
            "inputs": [{"name": "input_0", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]
        }
        assert c.post("/v2/models/mlp/versions/1.0.0/infer", json=x).status_code == 200
        assert c.post("/v2/models/mlp/versions/1.1.0/infer", json=x).status_code == 404

        sign_bundle(unsigned, other.private)  # signed, but by a key the server does not trust
        deadline = time.monotonic() + 20
        while (
            "not one of the 1 trusted key(s)" not in server.logs() and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        line = [ln for ln in server.logs().splitlines() if "trusted key(s)" in ln]
        assert len(line) == 1 and "refused mlp 1.1.0" in line[0], server.logs()
        assert _ready(c, "1.1.0") != 200

        sign_bundle(unsigned, keys.private)  # re-signed by alice: picked up on reload
        deadline = time.monotonic() + 20
        while _ready(c, "1.1.0") != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _ready(c, "1.1.0") == 200, server.logs()
        assert _ready(c, "1.0.0") == 200


def test_serve_refuses_a_bad_trusted_key_at_startup(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    import subprocess

    from signing_helpers import REPO

    built = built_store(tmp_path_factory)
    store = tmp_path / "store"
    copy_bundle(built, "1.0.0", store)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "handoff",
            "serve",
            str(store),
            "--port",
            "0",
            "--trusted-key",
            str(tmp_path / "missing.pub"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"handoff serve: trusted key {tmp_path / 'missing.pub'}: no such file"
    ]


def test_tuning_never_runs_an_unsigned_version(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --tune --trusted-key``: tuning runs sessions, so the signature is checked
    first; an unsigned version is refused without being tuned."""
    import labkit.runtime.tune as tune_mod
    from labkit.serve.repository import ModelRepository

    built = built_store(tmp_path_factory)
    keys = make_keys(tmp_path / "keys", "alice")
    store = tmp_path / "store"
    sign_bundle(copy_bundle(built, "1.0.0", store), keys.private)
    copy_bundle(built, "1.1.0", store)
    tuned: list[Path] = []
    real = tune_mod.ensure_tuned

    def counting(path: Path, **kw: object) -> object:
        tuned.append(Path(path))
        return real(path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(tune_mod, "ensure_tuned", counting)
    repo = ModelRepository(store, tuning=True, tune_budget_s=2.0, trusted_keys=[str(keys.public)])
    repo.refresh()
    assert repo.served() == [("mlp", "1.0.0")]
    assert "[signature-trust]" in repo.refused()[("mlp", "1.1.0")]
    assert [p.name for p in tuned] == ["1.0.0"]
