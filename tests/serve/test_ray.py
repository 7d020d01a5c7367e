"""The app as a Ray Serve deployment with 2 CPU replicas on a local Ray instance.

Skipped only when ray[serve] is not installed (CI installs it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_helpers import Bundles, free_port

from labkit.runtime import load

serve = pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_answer_like_the_runtime(
    ray_local: None, bundles: Bundles, tmp_path: Path
) -> None:
    from labkit.serve import deployment

    store = bundles.store_with(tmp_path / "store", "mlp-1.0.0", "two")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        deployment(store, replicas=2, max_queued_requests=64), name="labkit", route_prefix="/"
    )
    status = serve.status().applications["labkit"]
    (dep,) = status.deployments.values()
    assert dep.replica_states.get("RUNNING") == 2, dep.replica_states

    model = load(store / "mlp" / "1.0.0")
    rng = np.random.default_rng(7)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get("/v2/models/mlp").json()["versions"] == ["1.0.0"]
        for i in range(20):
            x = rng.standard_normal((1 + i % 4, 8)).astype(np.float32)
            r = c.post(
                "/v2/models/mlp/infer",
                json={
                    "inputs": [
                        {
                            "name": "input_0",
                            "shape": list(x.shape),
                            "datatype": "FP32",
                            "data": x.ravel().tolist(),
                        }
                    ]
                },
            )
            assert r.status_code == 200, r.text
            out = r.json()["outputs"][0]
            got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
            np.testing.assert_array_equal(got, model.predict(x)["output"])
        bad = c.post("/v2/models/mlp/infer", json={"inputs": []})
        assert bad.status_code == 400 and "error" in bad.json()
    serve.delete("labkit")


def test_cli_flags_reach_the_deployment() -> None:
    import argparse

    from labkit.serve.cli import add_serve_parser

    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "serve",
            "/srv/store",
            "--ray",
            "--replicas",
            "2",
            "--max-replicas",
            "4",
            "--max-queued-requests",
            "32",
        ]
    )
    assert args.ray and args.replicas == 2 and args.max_replicas == 4
    assert args.max_queued_requests == 32 and args.host == "127.0.0.1"
    assert args.func.__name__ == "run_serve"
