"""A real ``labkit.serve`` server, spoken to by tritonclient (JSON and binary), curl and
httpx; every answer is compared with ``labkit.runtime`` and checked against the protocol."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import oip_schema
import pytest
from serve_helpers import Bundles, Server, running

from labkit.runtime import load

tritonclient_http = pytest.importorskip("tritonclient.http")


def _x(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 8)).astype(np.float32)


def test_server_metadata_and_health(server: Server) -> None:
    with server.client() as c:
        meta = c.get("/v2").json()
        oip_schema.validate(meta, oip_schema.METADATA_SERVER)
        assert "binary_tensor_data" in meta["extensions"]
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}


def test_model_metadata_from_signature(server: Server) -> None:
    with server.client() as c:
        meta = c.get("/v2/models/mlp").json()
        oip_schema.validate(meta, oip_schema.METADATA_MODEL)
        assert meta == {
            "name": "mlp",
            "versions": ["1.0.0", "1.1.0"],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "input_0", "datatype": "FP32", "shape": [-1, 8]}],
            "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}],
        }
        two = c.get("/v2/models/two/versions/1.0.0").json()
        assert [t["datatype"] for t in two["inputs"]] == ["INT64", "FP32"]
        assert c.get("/v2/models/mlp/versions/1.0.0/ready").json() == {"name": "mlp", "ready": True}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_matches_runtime(server: Server, bundles: Bundles, binary: bool) -> None:
    client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_ready() and client.is_model_ready("mlp", "1.0.0")
    for version in ("1.0.0", "1.1.0"):
        expected_model = load(bundles.paths[f"mlp-{version}"])
        for rows in (1, 3, 17):
            x = _x(rows, seed=rows)
            inp = tritonclient_http.InferInput("input_0", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = tritonclient_http.InferRequestedOutput("output", binary_data=binary)
            result = client.infer(
                "mlp", [inp], model_version=version, outputs=[out], request_id=f"r{rows}"
            )
            got = result.as_numpy("output")
            assert got.dtype == np.float32 and got.shape == (rows, 3)
            np.testing.assert_array_equal(got, expected_model.predict(x)["output"])
            response = result.get_response()
            oip_schema.validate(response, oip_schema.INFERENCE_RESPONSE)
            assert response["model_version"] == version and response["id"] == f"r{rows}"


def test_tritonclient_two_inputs_int64(server: Server, bundles: Bundles) -> None:
    client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 10, (4, 5)).astype(np.int64)
    scale = rng.random((4, 1)).astype(np.float32)
    a = tritonclient_http.InferInput("input_0", [4, 5], "INT64")
    a.set_data_from_numpy(ids, binary_data=True)
    b = tritonclient_http.InferInput("input_1", [4, 1], "FP32")
    b.set_data_from_numpy(scale, binary_data=False)
    result = client.infer("two", [a, b])
    expected = load(bundles.paths["two"]).predict({"input_0": ids, "input_1": scale})
    (name,) = expected
    np.testing.assert_array_equal(result.as_numpy(name), expected[name])


def test_no_version_goes_to_latest(server: Server, bundles: Bundles) -> None:
    x = _x(2)
    body = {
        "inputs": [
            {"name": "input_0", "shape": [2, 8], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    with server.client() as c:
        r = c.post("/v2/models/mlp/infer", json=body)
    assert r.status_code == 200
    doc = r.json()
    assert doc["model_version"] == "1.1.0" and "id" not in doc and "parameters" not in doc
    got = np.asarray(doc["outputs"][0]["data"], dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(got, load(bundles.paths["mlp-1.1.0"]).predict(x)["output"])


def test_curl_json_and_nested_data(server: Server, bundles: Bundles) -> None:
    x = _x(2, seed=5)
    body = json.dumps(
        {
            "id": "curl",
            "inputs": [
                {"name": "input_0", "shape": [2, 8], "datatype": "FP32", "data": x.tolist()}
            ],
        }
    )
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "-X",
            "POST",
            f"{server.url}/v2/models/mlp/versions/1.0.0/infer",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    doc = json.loads(out.stdout)
    oip_schema.validate(doc, oip_schema.INFERENCE_RESPONSE)
    got = np.asarray(doc["outputs"][0]["data"], dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(got, load(bundles.paths["mlp-1.0.0"]).predict(x)["output"])


def test_raw_binary_request_without_content_type(server: Server, bundles: Bundles) -> None:
    """The binary extension by hand: JSON header + raw bytes, mixed JSON/binary outputs."""
    x = _x(3, seed=9)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input_0",
                    "shape": [3, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    with server.client() as c:
        r = c.post(
            "/v2/models/mlp/versions/1.0.0/infer",
            content=header + x.tobytes(),
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    doc = json.loads(r.content[:n])
    oip_schema.validate(doc, oip_schema.INFERENCE_RESPONSE)
    (out,) = doc["outputs"]
    assert "data" not in out and out["parameters"]["binary_data_size"] == 3 * 3 * 4
    got = np.frombuffer(r.content[n:], dtype="<f4").reshape(3, 3)
    np.testing.assert_array_equal(got, load(bundles.paths["mlp-1.0.0"]).predict(x)["output"])


def test_metrics_exposed(server: Server) -> None:
    x = _x(1)
    body = {
        "inputs": [
            {"name": "input_0", "shape": [1, 8], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    with server.client() as c:  # whatever ran before on this worker's server, one inference did
        assert c.post("/v2/models/mlp/infer", json=body).status_code == 200
    text = server.metrics()
    for name in (
        "labkit_requests_total",
        "labkit_request_duration_seconds_bucket",
        "labkit_batch_size_bucket",
        "labkit_queue_depth",
        "labkit_inflight_requests",
        "labkit_model_loads_total",
    ):
        assert name in text, name
    assert 'labkit_requests_total{route="infer",status="200"}' in text


def test_bearer_token(bundles: Bundles, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = bundles.store_with(tmp_path / "store", "mlp-1.0.0")
    token = "s3cret-token-for-tests"
    with running(store, tmp_path, env={"LABKIT_SERVE_TOKEN": token}) as s, s.client() as c:
        assert c.get("/v2/health/ready").status_code == 200  # probes stay open
        assert c.get("/v2/models/mlp").status_code == 401
        assert c.get("/v2/models/mlp", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.get("/v2/models/mlp", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["name"] == "mlp"
        assert c.get("/metrics").status_code == 401
