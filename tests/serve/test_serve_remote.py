"""`handoff serve s3://…` against a real S3-compatible server (moto, loopback): it serves
what was pushed, follows a promotion made on the bucket, picks up a new push, and never
sees an interrupted one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import s3_server
from serve_helpers import REPO, Bundles, running
from test_promotion import Load, infer_body, wait_for

from labkit.runtime import load


@pytest.fixture(scope="module")
def s3() -> Iterator[s3_server.S3]:
    with s3_server.moto_s3() as server:
        yield server


@pytest.mark.slow
def test_serve_an_s3_store(
    bundles: Bundles, s3: s3_server.S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labkit.bundle import aliases as al
    from labkit.runtime.remote import RemoteStore
    from labkit.runtime.transfer import push

    s3_server.use_s3(monkeypatch, s3)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "test-cache"))
    url = f"s3://{s3.bucket()}/models"
    store = RemoteStore(url)
    for v in ("1.0.0", "1.1.0"):
        push(bundles.paths[f"mlp-{v}"], store)
    al.promote(store.files, "mlp", "prod", "1.0.0", by="test")
    x = np.random.default_rng(5).standard_normal((2, 8)).astype(np.float32)
    expected = {v: load(bundles.paths[f"mlp-{v}"]).predict(x)["output"] for v in ("1.0.0", "1.1.0")}
    env = {**s3.env, "LABKIT_CACHE": str(tmp_path / "server-cache")}
    with running(url, tmp_path, "--reload-interval", "0.5", "--threads", "1", env=env) as server:  # type: ignore[arg-type]
        traffic = Load(server.url, x)
        traffic.start()
        try:
            wait_for(lambda: len(traffic.results) > 10, 30, "first answers")
            promote = subprocess.run(
                [sys.executable, "-m", "handoff", "promote", f"{url}/mlp/1.1.0"],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            )
            assert promote.returncode == 0, promote.stderr
            promoted = time.monotonic()
            wait_for(lambda: traffic.first_after(promoted, "1.1.0"), 30, "1.1.0 to answer")

            # an upload cut after two objects: never a version, on any scan
            real = store.fs.pipe_file
            sent: list[str] = []

            def flaky(path, data, *a, **kw):  # type: ignore[no-untyped-def]
                if len(sent) == 2:
                    raise ConnectionResetError("cut")
                sent.append(path)
                return real(path, data, *a, **kw)

            monkeypatch.setattr(store.fs, "pipe_file", flaky)
            with pytest.raises(ConnectionResetError):
                push(bundles.paths["mlp-1.2.0"], store)
            monkeypatch.setattr(store.fs, "pipe_file", real)
            time.sleep(1.5)  # three scans
            with server.client() as c:
                assert c.get("/v2/models/mlp").json()["versions"] == ["1.0.0", "1.1.0"]
            push(bundles.paths["mlp-1.2.0"], store)  # completed now: picked up
            with server.client() as c:
                wait_for(
                    lambda: c.get("/v2/models/mlp").json()["versions"][-1] == "1.2.0",
                    30,
                    "1.2.0 to be served",
                )
                got = c.post("/v2/models/mlp/versions/1.2.0/infer", json=infer_body(x))
                assert got.json()["model_version"] == "1.2.0"
            n = len(traffic.results)
            wait_for(lambda: len(traffic.results) > n + 10, 30, "more answers")
        finally:
            traffic.stop.set()
            traffic.join(30)
        logs = server.logs()
    assert not traffic.failures, traffic.failures[:5]
    assert traffic.runs() == ["1.0.0", "1.1.0"]  # prod, not the newest push
    for _, version, out in traffic.results:
        np.testing.assert_array_equal(out, expected[version])
    assert "refused" not in logs  # the cut upload was never seen as a version
    # served from the server's own verified cache, one folder per version
    cached = sorted(p.name for p in (tmp_path / "server-cache").glob("stores/*/mlp/*"))
    assert cached == ["1.0.0", "1.1.0", "1.2.0"]
