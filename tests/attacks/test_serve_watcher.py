"""Issue 16 item 4 (serve part) and the empty store: a store watcher stuck in a read that never
returns is reported and replaced, startup cannot hang on one version, and a store with nothing
to serve is one line (then a wait, or exit 2 with --require-models), never a traceback.

A reader blocked in ``open()`` (a FIFO swapped in between a reader's ``lstat`` and its
``open``, or a hung mount) is simulated in-process by a loader that waits on an event for
chosen versions: the readers themselves are hardened in the bundle layer, but the server
must survive any read that never returns. A FIFO left in place of a manifest is also served
for real: startup goes on, the version is refused alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from hostile_helpers import build_mlp, reseal  # noqa: E402
from serve_helpers import REPO, free_port, running  # noqa: E402

import labkit.serve.repository as repository  # noqa: E402
from labkit.serve import ServeConfig, create_app  # noqa: E402
from labkit.serve.reload import Reloader  # noqa: E402
from labkit.serve.repository import ModelRepository  # noqa: E402

X = {"inputs": [{"name": "input_0", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mlp(tmp_path_factory.mktemp("built"))


def land(built: Path, store: Path, version: str) -> Path:
    """A copy of ``built`` as mlp/VERSION (re-sealed with that version), landed atomically."""
    staging = store / f".staging-{version}"
    shutil.copytree(built, staging)
    if version != built.name:
        reseal(staging, {}, version=version)
    (store / "mlp").mkdir(parents=True, exist_ok=True)
    os.replace(staging, store / "mlp" / version)
    return store / "mlp" / version


class Blocker:
    """``repository.load`` that never returns for some versions until released: a reader
    blocked in ``open()`` on a FIFO or a hung mount, as far as the watcher can tell."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *versions: str) -> None:
        self.versions = set(versions)
        self.release = threading.Event()
        self.entered: list[str] = []
        real = repository.load

        def load(path: Path, **kw: object) -> object:
            if Path(path).name in self.versions:
                self.entered.append(Path(path).name)
                self.release.wait()
            return real(path, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(repository, "load", load)


def wait_for(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not true after {timeout}s")


def test_a_blocked_reader_hangs_a_bare_scan_but_not_the_watcher(
    built: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio

    store = tmp_path / "store"
    land(built, store, "1.0.0")
    land(built, store, "1.1.0")
    land(built, store, "1.2.0")
    blocker = Blocker(monkeypatch, "1.1.0")
    # the attack: an unsupervised scan (what the watcher used to run) never returns
    bare = ModelRepository(store, self_test=False)
    hung = threading.Thread(target=bare.refresh, daemon=True)
    hung.start()
    hung.join(1.0)
    assert hung.is_alive() and blocker.entered == ["1.1.0"]
    assert bare.served() == [("mlp", "1.0.0")]  # and 1.2.0 is never reached

    repo = ModelRepository(store, self_test=False)
    reloader = Reloader(repo, 0.0, stall_s=0.5, start=False)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, "labkit.serve"):
        asyncio.run(reloader.scan())
    assert time.monotonic() - started < 10
    assert repo.served() == [("mlp", "1.0.0"), ("mlp", "1.2.0")]  # the scan went past it
    assert "StuckError" in repo.refused()[("mlp", "1.1.0")]
    assert reloader.stalls == 1 and not reloader.stalled  # replaced by a scan that finished
    assert any("store watcher stuck" in r.getMessage() for r in caplog.records)
    assert any("loading mlp 1.1.0" in r.getMessage() for r in caplog.records)
    # the stuck thread wakes up later: whatever it loaded is not committed
    blocker.release.set()
    hung.join(30)
    wait_for(lambda: reloader._blocked() == 0)
    time.sleep(0.5)
    assert repo.served() == [("mlp", "1.0.0"), ("mlp", "1.2.0")]
    # a rescan does not retry the stuck version (its files did not change)
    asyncio.run(reloader.scan())
    assert blocker.entered.count("1.1.0") == 2  # the bare scan's and the supervised one's


def test_ready_degrades_while_watchers_are_stuck_then_recovers(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    store = tmp_path / "store"
    land(built, store, "1.0.0")
    blocker = Blocker(monkeypatch, "1.1.0", "1.2.0")
    config = ServeConfig(
        reload_interval_s=0.1, stall_timeout_s=0.5, max_stuck_watchers=2, self_test=False
    )
    app = create_app(store, config)
    plane = app.state.labkit
    with TestClient(app) as c:
        assert c.get("/v2/health/ready").status_code == 200
        land(built, store, "1.1.0")
        wait_for(lambda: plane.reloader.stalls == 1)
        land(built, store, "1.2.0")
        wait_for(lambda: plane.reloader.stalls == 2)
        # two threads blocked: no new scan can start safely; the server says so
        assert c.get("/v2/health/ready").status_code == 503
        metrics = c.get("/metrics").text
        assert "labkit_watcher_stalls_total 2.0" in metrics
        assert "labkit_watcher_stuck_threads 2.0" in metrics
        assert c.post("/v2/models/mlp/infer", json=X).json()["model_version"] == "1.0.0"
        land(built, store, "1.3.0")
        time.sleep(1.0)
        assert c.get("/v2/models/mlp").json()["versions"] == ["1.0.0"]  # paused
        blocker.release.set()  # the reads return: scanning resumes
        wait_for(lambda: c.get("/v2/health/ready").status_code == 200)
        wait_for(lambda: "1.3.0" in c.get("/v2/models/mlp").json()["versions"])
        assert c.get("/v2/models/mlp").json()["versions"] == ["1.0.0", "1.3.0"]
        assert c.get("/v2/models/mlp/versions/1.1.0/ready").status_code == 503
        assert "labkit_watcher_stuck_threads 0.0" in c.get("/metrics").text


def test_a_fifo_for_a_manifest_cannot_hang_startup(built: Path, tmp_path: Path) -> None:
    """For real: 1.1.0's manifest is a FIFO nobody writes. The server starts, serves 1.0.0,
    refuses 1.1.0 (stuck, or refused by a reader that no longer blocks) and still picks up
    the next good version."""
    store = tmp_path / "store"
    land(built, store, "1.0.0")
    fifo_version = land(built, store, "1.1.0")
    (fifo_version / "manifest.json").unlink()
    os.mkfifo(fifo_version / "manifest.json")
    args = ("--reload-interval", "0.2", "--stall-timeout", "1", "--no-self-test")
    with running(store, tmp_path, *args, timeout=60) as server, server.client() as c:
        assert c.get("/v2/models/mlp").json()["versions"] == ["1.0.0"]
        assert c.get("/v2/models/mlp/versions/1.1.0/ready").status_code == 503
        land(built, store, "1.2.0")
        wait_for(lambda: "1.2.0" in c.get("/v2/models/mlp").json()["versions"])
        assert c.post("/v2/models/mlp/infer", json=X).json()["model_version"] == "1.2.0"
        logs = server.logs()
    assert "Traceback" not in logs
    assert "store watcher stuck" in logs or "refused mlp 1.1.0" in logs, logs


def _serve(store: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handoff", "serve", str(store), "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_nothing_to_serve_with_require_models_exits_2_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _serve(empty, "--require-models")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"handoff serve: nothing to serve in {empty} (--require-models)"
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    broken = tmp_path / "broken"
    (broken / "mlp" / "1.0.0").mkdir(parents=True)
    (broken / "mlp" / "1.0.0" / "manifest.json").write_text("{}")
    proc = _serve(broken, "--require-models")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"handoff serve: nothing to serve in {broken} (mlp 1.0.0: ")
    assert last.endswith("(--require-models)")


def test_an_empty_store_is_said_in_one_line_and_the_server_waits(
    built: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "handoff", "serve", str(store), "--port", str(port)]
            + ["--reload-interval", "0.2", "--no-self-test"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def live() -> bool:
            try:
                return httpx.get(f"{url}/v2/health/live", timeout=2).status_code == 200
            except httpx.HTTPError:
                assert proc.poll() is None, log.read_text()
                return False

        wait_for(live, 60)
        assert httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 503
        land(built, store, "1.0.0")
        wait_for(lambda: httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200)
        r = httpx.post(f"{url}/v2/models/mlp/infer", json=X, timeout=10)
        assert r.status_code == 200 and r.json()["model_version"] == "1.0.0"
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    said = [line for line in text.splitlines() if "nothing to serve" in line]
    assert said == [said[0]] and f"nothing to serve in {store} yet; waiting for versions" in said[0]
    assert "Traceback" not in text
