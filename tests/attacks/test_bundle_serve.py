"""``handoff serve`` refuses the external-data bundle at startup and at hot reload, with its
working directory beside the secret, while a good bundle keeps serving."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import httpx
from bundle_attack_tools import MODEL, SECRET, cwd, external_w, leak_bundle, leak_model, put

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_helpers import running  # noqa: E402


def _hostile(store: Path, name: str) -> Path:
    bundle = leak_bundle(store, name)
    put(bundle, MODEL, leak_model(external_w("secret.txt")))
    return bundle


def _infer(url: str, name: str) -> httpx.Response:
    body = {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1, 16], "data": [0] * 16}]}
    return httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)


def _wait_for(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_serve_refuses_external_data_at_startup_and_reload(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "secret.txt").write_bytes(SECRET)
    store = tmp_path / "store"
    leak_bundle(store, "good")
    _hostile(store, "leak")
    later = _hostile(tmp_path / "later", "late")
    logs = tmp_path / "logs"
    logs.mkdir()
    with cwd(secrets), running(store, logs, "--reload-interval", "0.2") as server:
        ok = _infer(server.url, "good")
        assert ok.status_code == 200, ok.text
        assert ok.json()["outputs"][0]["data"] == list(range(16))
        refused = _infer(server.url, "leak")
        assert refused.status_code == 404, refused.text
        assert SECRET.decode() not in refused.text
        assert httpx.get(f"{server.url}/v2/models/leak/ready", timeout=10).status_code != 200
        lines = [ln for ln in server.logs().splitlines() if "refused leak 1.0.0" in ln]
        assert len(lines) == 1 and "[external-data]" in lines[0], server.logs()

        # Hot reload: the same attack landing while serving is refused the same way.
        shutil.copytree(later.parent, tmp_path / "staging" / "late")
        (tmp_path / "staging" / "late").rename(store / "late")  # appears atomically
        assert _wait_for(lambda: "refused late 1.0.0" in server.logs(), 30), server.logs()
        line = next(ln for ln in server.logs().splitlines() if "refused late 1.0.0" in ln)
        assert "[external-data]" in line
        assert _infer(server.url, "late").status_code == 404
        assert _infer(server.url, "good").status_code == 200
    assert SECRET.decode() not in server.logs()
