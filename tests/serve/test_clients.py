"""The same tests through ``tritonclient.http`` (REST) and ``tritonclient.grpc`` (gRPC), against
one real server process serving both on the same data plane: inference, metadata, errors,
classification and the bearer token. Every answer is compared with ``labkit.runtime``; every
refusal must carry the same message over both protocols."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from serve_helpers import Bundles, Server, free_port, running

from labkit.runtime import load

tritonclient_http = pytest.importorskip("tritonclient.http")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

TOKEN = "s3cret-token-for-tests"  # noqa: S105 - a test fixture


def auth() -> dict[str, str]:
    """A fresh dict each call: tritonclient.http writes into the headers it is given."""
    return {"authorization": f"Bearer {TOKEN}"}


@dataclass
class Client:
    """One protocol: its tritonclient module, a connected client, and how it names codes."""

    kind: str
    module: Any
    client: Any
    codes: dict[int, str]

    def status(self, http_status: int) -> str:
        return self.codes[http_status]


HTTP_CODES = {400: "400", 401: "401", 404: "404", 503: "503"}
GRPC_CODES = {
    400: "StatusCode.INVALID_ARGUMENT",
    401: "StatusCode.UNAUTHENTICATED",
    404: "StatusCode.NOT_FOUND",
    503: "StatusCode.UNAVAILABLE",
}


@pytest.fixture(scope="module")
def both(bundles: Bundles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = bundles.store_with(tmp_path_factory.mktemp("clients"), "mlp-1.0.0", "mlp-1.1.0", "two")
    grpc_port = free_port()
    with running(
        store,
        tmp_path_factory.mktemp("logs"),
        "--reload-interval",
        "0",
        "--grpc-port",
        str(grpc_port),
        env={"LABKIT_SERVE_TOKEN": TOKEN},
    ) as server:
        server.grpc_port = grpc_port  # type: ignore[attr-defined]
        yield server


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, both: Server) -> Iterator[Client]:
    if request.param == "http":
        c = tritonclient_http.InferenceServerClient(f"127.0.0.1:{both.port}")
        yield Client("http", tritonclient_http, c, HTTP_CODES)
    else:
        c = tritonclient_grpc.InferenceServerClient(f"127.0.0.1:{both.grpc_port}")  # type: ignore[attr-defined]
        yield Client("grpc", tritonclient_grpc, c, GRPC_CODES)
    c.close()


def _x(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 8)).astype(np.float32)


def _input(c: Client, name: str, array: np.ndarray, datatype: str, binary: bool = True) -> Any:
    inp = c.module.InferInput(name, list(array.shape), datatype)
    if c.kind == "http":
        inp.set_data_from_numpy(array, binary_data=binary)
    else:
        inp.set_data_from_numpy(array)
    return inp


def _output(c: Client, name: str, class_count: int = 0) -> Any:
    if c.kind == "http":
        return c.module.InferRequestedOutput(name, binary_data=True, class_count=class_count)
    return c.module.InferRequestedOutput(name, class_count=class_count)


def _refusal(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_health_and_metadata(client: Client) -> None:
    c = client.client
    assert c.is_server_live() and c.is_server_ready()  # probes need no token
    assert c.is_model_ready("mlp", "1.0.0", headers=auth())
    server = c.get_server_metadata(
        headers=auth(), **({"as_json": True} if client.kind == "grpc" else {})
    )
    assert server["name"] == "labkit"
    assert set(server["extensions"]) >= {"binary_tensor_data", "classification"}
    kwargs = {"as_json": True} if client.kind == "grpc" else {}
    meta = c.get_model_metadata("mlp", headers=auth(), **kwargs)
    assert meta["name"] == "mlp" and meta["versions"] == ["1.0.0", "1.1.0"]
    assert meta["platform"] == "onnxruntime_onnx"
    # gRPC's JSON form writes int64 as strings; the values are the same
    shape = [int(d) for d in meta["inputs"][0]["shape"]]
    assert (meta["inputs"][0]["name"], meta["inputs"][0]["datatype"], shape) == (
        "input_0",
        "FP32",
        [-1, 8],
    )
    assert meta["outputs"][0]["name"] == "output"
    two = c.get_model_metadata("two", "1.0.0", headers=auth(), **kwargs)
    assert [t["datatype"] for t in two["inputs"]] == ["INT64", "FP32"]


@pytest.mark.parametrize("binary", [True, False], ids=["raw", "typed"])
def test_inference_matches_the_runtime(client: Client, bundles: Bundles, binary: bool) -> None:
    """REST binary/JSON and gRPC raw/typed contents answer exactly what the runtime does."""
    for version in ("1.0.0", "1.1.0"):
        expected = load(bundles.paths[f"mlp-{version}"])
        for rows in (1, 3, 17):
            x = _x(rows, seed=rows)
            inp = _input(client, "input_0", x, "FP32", binary=binary)
            if client.kind == "grpc" and not binary:  # typed contents, by hand
                inp._get_tensor().ClearField("contents")
                inp._raw_content = None
                inp._get_tensor().contents.fp32_contents.extend(x.ravel().tolist())
            result = client.client.infer(
                "mlp",
                [inp],
                model_version=version,
                outputs=[_output(client, "output")],
                request_id=f"r{rows}",
                headers=auth(),
            )
            got = result.as_numpy("output")
            assert got.dtype == np.float32 and got.shape == (rows, 3)
            np.testing.assert_array_equal(got, expected.predict(x)["output"])
            response = result.get_response(**({"as_json": True} if client.kind == "grpc" else {}))
            assert response["model_version"] == version and response["id"] == f"r{rows}"


def test_no_version_answers_from_the_latest(client: Client, bundles: Bundles) -> None:
    x = _x(2)
    result = client.client.infer("mlp", [_input(client, "input_0", x, "FP32")], headers=auth())
    kwargs = {"as_json": True} if client.kind == "grpc" else {}
    assert result.get_response(**kwargs)["model_version"] == "1.1.0"
    np.testing.assert_array_equal(
        result.as_numpy("output"), load(bundles.paths["mlp-1.1.0"]).predict(x)["output"]
    )


def test_two_inputs_int64(client: Client, bundles: Bundles) -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 10, (4, 5)).astype(np.int64)
    scale = rng.random((4, 1)).astype(np.float32)
    inputs = [_input(client, "input_0", ids, "INT64"), _input(client, "input_1", scale, "FP32")]
    result = client.client.infer("two", inputs, headers=auth())
    expected = load(bundles.paths["two"]).predict({"input_0": ids, "input_1": scale})
    (name,) = expected
    np.testing.assert_array_equal(result.as_numpy(name), expected[name])


def test_classification_top_k(client: Client, bundles: Bundles) -> None:
    x = _x(3, seed=7)
    result = client.client.infer(
        "mlp",
        [_input(client, "input_0", x, "FP32")],
        model_version="1.0.0",
        outputs=[_output(client, "output", class_count=2)],
        headers=auth(),
    )
    got = result.as_numpy("output")
    assert got.shape == (3, 2)
    logits = load(bundles.paths["mlp-1.0.0"]).predict(x)["output"]
    for row, classes in zip(logits, got):
        top = np.argsort(-row, kind="stable")[:2]
        assert [c.decode() for c in classes] == [f"{row[i]:f}:{i}" for i in top]


ERRORS = [
    ("unknown model", 404, dict(model="nope"), "unknown model 'nope'"),
    ("unknown version", 404, dict(version="9.9.9"), "has no version '9.9.9'"),
    ("wrong datatype", 400, dict(datatype="FP64"), "has datatype 'FP64', the model expects FP32"),
    ("wrong shape", 400, dict(shape=(2, 7)), "input 'input_0'"),
    ("unknown output", 400, dict(output="nope"), "unknown output 'nope'"),
    (
        "unsupported parameter",
        400,
        dict(parameters={"priority_hint": 3}),
        "unsupported inference parameter(s) ['priority_hint'] on the request",
    ),
]


@pytest.mark.parametrize(("what", "status", "change", "words"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_have_the_same_code_and_words(
    client: Client, what: str, status: int, change: dict[str, Any], words: str
) -> None:
    shape = change.get("shape", (2, 8))
    datatype = change.get("datatype", "FP32")
    x = np.zeros(shape, dtype=np.float64 if datatype == "FP64" else np.float32)
    kwargs: dict[str, Any] = {"headers": auth()}
    if "version" in change:
        kwargs["model_version"] = change["version"]
    if "output" in change:
        kwargs["outputs"] = [_output(client, change["output"])]
    if "parameters" in change:
        kwargs["parameters"] = change["parameters"]
    err = _refusal(
        lambda: client.client.infer(
            change.get("model", "mlp"), [_input(client, "input_0", x, datatype)], **kwargs
        )
    )
    assert err.status() == client.status(status), (err.status(), err.message())
    assert words in err.message(), err.message()


def test_the_token_is_required_and_checked(client: Client) -> None:
    x = _x(1)
    for headers in (None, {"authorization": "Bearer wrong-token"}):
        err = _refusal(
            lambda h=headers: client.client.infer(
                "mlp", [_input(client, "input_0", x, "FP32")], headers=h
            )
        )
        assert err.status() == client.status(401) and "bearer token" in err.message()
    err = _refusal(lambda: client.client.get_model_metadata("mlp"))
    assert err.status() == client.status(401)
    ok = client.client.infer("mlp", [_input(client, "input_0", x, "FP32")], headers=auth())
    assert ok.as_numpy("output").shape == (1, 3)


def test_grpc_and_rest_share_the_metrics(both: Server) -> None:
    import httpx

    text = httpx.get(f"{both.url}/metrics", headers=auth(), timeout=10).text
    assert 'labkit_grpc_requests_total{code="OK",method="ModelInfer"}' in text
    assert 'labkit_grpc_requests_total{code="UNAUTHENTICATED",method="ModelInfer"}' in text
    assert 'labkit_requests_total{route="infer",status="200"}' in text
    assert 'status="500"' not in text and 'code="INTERNAL"' not in text


def test_a_triton_parameter_this_server_does_not_run_is_refused(client: Client) -> None:
    """Triton's ``priority``: refused by name rather than silently ignored."""
    x = _x(1)
    err = _refusal(
        lambda: client.client.infer(
            "mlp", [_input(client, "input_0", x, "FP32")], priority=3, headers=auth()
        )
    )
    assert err.status() == client.status(400)
    assert "unsupported inference parameter(s) ['priority']" in err.message()


def _channel(server: Server) -> object:
    grpc = pytest.importorskip("grpc")
    return grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")  # type: ignore[attr-defined]


def test_grpc_malformed_message_and_unserved_methods(both: Server) -> None:
    import grpc

    with _channel(both) as channel:  # type: ignore[attr-defined]
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            call(b"\xff\xff\xff garbage", metadata=tuple(auth().items()), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid message" in info.value.details()
        config = channel.unary_unary("/inference.GRPCInferenceService/ModelConfig")
        with pytest.raises(grpc.RpcError) as info:
            config(b"", metadata=tuple(auth().items()), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
