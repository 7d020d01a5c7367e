"""Issue 8 section 2: one bad bundle never takes serving down.

Each test builds its bad version in the test (a real bundle whose model bytes, golden file or
store root is then broken) and runs a real server on 127.0.0.1 or the real repository.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from hostile_helpers import build_mlp, reseal  # noqa: E402
from serve_helpers import running  # noqa: E402

from labkit.serve.reload import Reloader  # noqa: E402
from labkit.serve.repository import ModelRepository  # noqa: E402

X = {"inputs": [{"name": "input_0", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """mlp 1.0.0 and 1.1.0: two good versions of the same model (different weights)."""
    store = tmp_path_factory.mktemp("built")
    return {"1.0.0": build_mlp(store, seed=0), "1.1.0": build_mlp(store, seed=1)}


def land(src: Path, store: Path, version: str, *, garbage: bool = False) -> Path:
    """Put a copy of ``src`` into ``store`` as mlp/VERSION, atomically (dot-dir + rename);
    ``garbage`` replaces its model with bytes ONNX Runtime cannot load (digests re-sealed, so
    the bundle verifies and only the engine refuses it)."""
    staging = store / f".staging-{version}"
    shutil.copytree(src, staging)
    if garbage:
        reseal(staging, {"models/fp32.onnx": b"\x08\x07garbage, not a model" * 50})
    (store / "mlp").mkdir(parents=True, exist_ok=True)
    final = store / "mlp" / version
    os.replace(staging, final)
    return final


def refused_count(metrics: str, version: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("labkit_versions_refused_total{") and f'version="{version}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not true after {timeout}s")


class Traffic:
    """Keeps asking one version for an answer while the store changes under the server."""

    def __init__(self, url: str, version: str) -> None:
        self.url, self.version = url, version
        self.codes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as c:
            while not self._stop.is_set():
                r = c.post(f"/v2/models/mlp/versions/{self.version}/infer", json=X)
                self.codes.append(r.status_code)
                time.sleep(0.02)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def test_garbage_version_at_startup_is_refused_alone(
    built: dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    land(built["1.0.0"], store, "1.0.0")
    land(built["1.1.0"], store, "1.1.0", garbage=True)
    with running(store, tmp_path, "--reload-interval", "0") as server, server.client() as c:
        meta = c.get("/v2/models/mlp").json()
        assert meta["versions"] == ["1.0.0"]
        r = c.post("/v2/models/mlp/infer", json=X)
        assert r.status_code == 200 and r.json()["model_version"] == "1.0.0"
        bad = c.get("/v2/models/mlp/versions/1.1.0/ready")
        assert bad.status_code == 503 and bad.json() == {"name": "mlp", "ready": False}
        assert c.get("/v2/models/mlp/versions/1.0.0/ready").json()["ready"] is True
        assert c.get("/v2/health/ready").status_code == 200
        assert refused_count(server.metrics(), "1.1.0") == 1
        lines = [ln for ln in server.logs().splitlines() if "refused mlp 1.1.0 [" in ln]
        assert len(lines) == 1, server.logs()
        assert "Traceback" not in server.logs()


def test_hot_reload_survives_garbage_then_serves_the_next_good_version(
    built: dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    land(built["1.0.0"], store, "1.0.0")
    interval = 0.3
    with (
        running(store, tmp_path, "--reload-interval", str(interval)) as server,
        Traffic(server.url, "1.0.0") as traffic,
        server.client() as c,
    ):
        land(built["1.1.0"], store, "1.1.0", garbage=True)
        wait_for(lambda: refused_count(server.metrics(), "1.1.0") == 1)
        assert c.get("/v2/health/ready").status_code == 200  # the watcher is alive
        good = built["1.1.0"].parent / "1.2.0"
        if not good.exists():
            shutil.copytree(built["1.1.0"], good)
            reseal(good, {}, version="1.2.0")
        landed = time.monotonic()
        land(good, store, "1.2.0")
        wait_for(lambda: "1.2.0" in c.get("/v2/models/mlp").json()["versions"])
        assert time.monotonic() - landed < 10 * interval + 5  # a few scans, not never
        r = c.post("/v2/models/mlp/infer", json=X)
        assert r.json()["model_version"] == "1.2.0"
        # touching the refused version's files changes mtimes, not content: no retry
        for f in (store / "mlp" / "1.1.0").rglob("*"):
            os.utime(f)
        time.sleep(4 * interval)
        assert refused_count(server.metrics(), "1.1.0") == 1
        # new content in the same directory: retried, and served
        bad_dir = store / "mlp" / "1.1.0"
        for f in built["1.1.0"].rglob("*"):
            if f.is_file():
                shutil.copyfile(f, bad_dir / f.relative_to(built["1.1.0"]))
        wait_for(lambda: "1.1.0" in c.get("/v2/models/mlp").json()["versions"])
        assert c.get("/v2/models/mlp/versions/1.1.0/ready").json()["ready"] is True
    assert traffic.codes and set(traffic.codes) == {200}, set(traffic.codes)


def test_store_root_gone_briefly_keeps_serving(built: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "store"
    land(built["1.0.0"], store, "1.0.0")
    away = tmp_path / "store-away"
    with (
        running(store, tmp_path, "--reload-interval", "0.2") as server,
        Traffic(server.url, "1.0.0") as traffic,
        server.client() as c,
    ):
        os.replace(store, away)
        time.sleep(1.0)
        assert c.get("/v2/health/ready").status_code == 200
        assert c.post("/v2/models/mlp/infer", json=X).status_code == 200
        os.replace(away, store)
        land(built["1.1.0"], store, "1.1.0")
        wait_for(lambda: "1.1.0" in c.get("/v2/models/mlp").json()["versions"])
        logs = server.logs()
    assert "store scan failed" in logs and "store readable again" in logs
    assert set(traffic.codes) == {200}


def test_any_exception_loading_one_version_refuses_only_it(
    built: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = tmp_path / "store"
    land(built["1.0.0"], store, "1.0.0")
    broken = land(built["1.1.0"], store, "1.1.0")
    # a golden file without the model's input: a KeyError deep in the self-test
    m = json.loads((broken / "manifest.json").read_text())
    buf = io.BytesIO()
    np.savez(buf, not_the_input=np.zeros((1, 8), np.float32))
    reseal(broken, {m["golden"]["inputs"]: buf.getvalue()})
    events: list[tuple[str, str, bool, str]] = []
    repo = ModelRepository(store, on_event=lambda *e: events.append(e))
    with caplog.at_level(logging.ERROR, "labkit.serve"):
        repo.refresh()
    assert repo.served() == [("mlp", "1.0.0")]
    assert ("mlp", "1.1.0") in repo.refused()
    assert [e for e in events if not e[2]][0][:3] == ("mlp", "1.1.0", False)
    assert any("refused mlp 1.1.0 [" in r.getMessage() for r in caplog.records)

    # fault injection: an out-of-memory while loading a third version refuses only it
    land(built["1.1.0"], store, "1.2.0")
    reseal(store / "mlp" / "1.2.0", {}, version="1.2.0")
    import labkit.serve.repository as repository

    real_load = repository.load

    def load_oom(path: Path, **kw: object) -> object:
        if Path(path).name == "1.2.0":
            raise MemoryError("cannot allocate the session")
        return real_load(path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(repository, "load", load_oom)
    repo.refresh()
    assert repo.served() == [("mlp", "1.0.0")]
    assert ("mlp", "1.2.0") in repo.refused()
    assert [e for e in events if not e[2]][-1] == ("mlp", "1.2.0", False, "MemoryError")


def test_a_dead_watcher_turns_readiness_false(
    built: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "store"
    land(built["1.0.0"], store, "1.0.0")
    repo = ModelRepository(store)
    repo.refresh()
    died: list[bool] = []

    async def after() -> None:
        raise RuntimeError("a bug in the after-reload hook")

    async def scenario() -> Reloader:
        reloader = Reloader(repo, 0.05, after=after, on_death=lambda: died.append(True))
        for _ in range(100):
            if not reloader.alive:
                break
            await asyncio.sleep(0.02)
        await reloader.stop()
        return reloader

    with caplog.at_level(logging.ERROR, "labkit.serve"):
        reloader = asyncio.run(scenario())
    assert reloader.alive is False and died == [True]
    assert any(
        "store watcher died" in r.getMessage()
        and "a bug in the after-reload hook" in r.getMessage()
        for r in caplog.records
    )
