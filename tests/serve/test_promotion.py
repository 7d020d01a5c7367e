"""Serving follows aliases: a promotion and a rollback switch a running server's answers with
zero failed requests under steady load; a target refused on this host never takes over."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_helpers import REPO, Bundles, running

from labkit.bundle import Manifest, Store, write_bundle
from labkit.bundle import aliases as al
from labkit.runtime import load


def infer_body(x: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "input_0",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }


class Load(threading.Thread):
    """Unversioned requests back to back from one client, every outcome recorded with the
    time it arrived."""

    def __init__(self, url: str, x: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.url, self.x = url, x
        self.results: list[tuple[float, str, np.ndarray]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as c:
            while not self.stop.is_set():
                try:
                    r = c.post(f"{self.url}/v2/models/mlp/infer", json=infer_body(self.x))
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text}")
                    continue
                doc = r.json()
                out = np.asarray(doc["outputs"][0]["data"], dtype=np.float32).reshape(-1, 3)
                self.results.append((time.monotonic(), doc["model_version"], out))

    def first_after(self, t: float, version: str) -> float | None:
        return next((at for at, v, _ in self.results if at > t and v == version), None)

    def runs(self) -> list[str]:
        """The versions answered, consecutive repeats collapsed: 1.0.0, 1.1.0, 1.0.0 …"""
        seq: list[str] = []
        for _, v, _ in self.results:
            if not seq or seq[-1] != v:
                seq.append(v)
        return seq


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def handoff(*argv: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "handoff", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def land_failing_copy(store: Path, src: str, version: str) -> None:
    """A new version, every digest right, whose golden outputs this host does not reproduce
    (what another CPU or a bad build looks like): integrity passes, the self-test fails."""
    folder = store / "mlp" / src
    m = Manifest.from_json((folder / "manifest.json").read_bytes())
    files = {f.path: (folder / f.path).read_bytes() for f in m.files}
    with np.load(io.BytesIO(files[m.golden.expected])) as z:
        arrays = {k: z[k] + 1.0 for k in z.files}
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    files[m.golden.expected] = buf.getvalue()
    write_bundle(store, "mlp", version, files, m)


@pytest.mark.slow
def test_promote_and_rollback_switch_answers_under_steady_load(
    bundles: Bundles, tmp_path: Path
) -> None:
    store = bundles.store_with(tmp_path / "store", "mlp-1.0.0", "mlp-1.1.0")
    x = np.random.default_rng(7).standard_normal((2, 8)).astype(np.float32)
    expected = {v: load(store / "mlp" / v).predict(x)["output"] for v in ("1.0.0", "1.1.0")}
    assert not np.allclose(expected["1.0.0"], expected["1.1.0"])
    handoff("promote", str(store / "mlp" / "1.0.0"))
    interval = 0.5
    args = ("--alias", "prod", "--reload-interval", str(interval), "--threads", "1")
    with running(store, tmp_path, *args) as server:
        traffic = Load(server.url, x)
        traffic.start()
        try:
            wait_for(lambda: len(traffic.results) > 20, 30, "first answers")
            with server.client() as c:  # prod answers although 1.1.0 is the latest
                by_alias = c.post("/v2/models/mlp/versions/prod/infer", json=infer_body(x))
                assert by_alias.json()["model_version"] == "1.0.0"
                latest = c.post("/v2/models/mlp/versions/latest/infer", json=infer_body(x))
                assert latest.json()["model_version"] == "1.1.0"
                assert c.get("/v2/models/mlp/versions/staging").status_code == 404
                assert c.get("/v2/models/mlp/versions/prod").json()["versions"] == [
                    "1.0.0",
                    "1.1.0",
                ]

            handoff("promote", str(store / "mlp" / "1.1.0"))
            promoted = time.monotonic()
            wait_for(lambda: traffic.first_after(promoted, "1.1.0"), 30, "1.1.0 to answer")
            lag = traffic.first_after(promoted, "1.1.0") - promoted  # type: ignore[operator]

            handoff("rollback", str(store / "mlp"))
            rolled = time.monotonic()
            wait_for(lambda: traffic.first_after(rolled, "1.0.0"), 30, "1.0.0 to answer again")

            # 1.2.0 fails its self-test here; a promoter elsewhere (where it passed) moves
            # prod to it: this server keeps answering with 1.0.0
            land_failing_copy(store, "1.1.0", "1.2.0")
            wait_for(lambda: 'version="1.2.0"' in server.metrics(), 30, "1.2.0 to be refused")
            al.promote(Store(store).files, "mlp", "prod", "1.2.0", by="ci@another-host")
            held = 'labkit_alias_held_total{alias="prod",model="mlp",version="1.2.0"} 1.0'
            wait_for(lambda: held in server.metrics(), 30, "the promotion to be held")
            n = len(traffic.results)
            wait_for(lambda: len(traffic.results) > n + 30, 30, "answers after the hold")
        finally:
            traffic.stop.set()
            traffic.join(30)
        logs = server.logs()
    assert not traffic.failures, traffic.failures[:5]  # zero failed requests throughout
    assert traffic.runs() == ["1.0.0", "1.1.0", "1.0.0"]  # one clean switch each way
    for _, version, out in traffic.results:  # every answer is the version it names
        np.testing.assert_array_equal(out, expected[version])
    # picked up at the next scan (a generous bound: this machine is shared and noisy)
    assert lag < interval + 10, lag
    assert "alias prod → 1.1.0 in service" in logs
    assert re.search(r"alias prod → 1\.2\.0 not put into service \(.*self-test failed", logs)
    assert "it keeps answering with 1.0.0" in logs
    print(f"promotion picked up {lag:.2f} s after 'handoff promote' returned ({interval} s scans)")


def test_both_protocols_resolve_aliases_to_concrete_versions(
    bundles: Bundles, tmp_path: Path
) -> None:
    """REST and gRPC share the one lookup: no version follows prod, a version field may
    name an alias or latest, and the answer always names the concrete version."""
    grpcclient = pytest.importorskip("tritonclient.grpc")
    from serve_helpers import free_port
    from tritonclient.utils import InferenceServerException

    store = bundles.store_with(tmp_path / "store", "mlp-1.0.0", "mlp-1.1.0")
    al.promote(Store(store).files, "mlp", "prod", "1.0.0")
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    port = free_port()
    args = ("--reload-interval", "0", "--grpc-port", str(port), "--threads", "1")
    with running(store, tmp_path, *args) as server:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        inp = grpcclient.InferInput("input_0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        try:
            for asked, concrete in (("", "1.0.0"), ("prod", "1.0.0"), ("latest", "1.1.0")):
                got = client.infer("mlp", [inp], model_version=asked)
                assert got.get_response(as_json=True)["model_version"] == concrete, asked
                np.testing.assert_array_equal(
                    got.as_numpy("output"), load(store / "mlp" / concrete).predict(x)["output"]
                )
            with pytest.raises(InferenceServerException, match="no alias 'staging'") as err:
                client.infer("mlp", [inp], model_version="staging")
            assert err.value.status() == "StatusCode.NOT_FOUND"
        finally:
            client.close()
        with server.client() as c:
            assert c.post("/v2/models/mlp/infer", json=infer_body(x)).json()["model_version"] == (
                "1.0.0"
            )
            missing = c.post("/v2/models/mlp/versions/staging/infer", json=infer_body(x))
            assert missing.status_code == 404 and "no alias 'staging'" in missing.json()["error"]
