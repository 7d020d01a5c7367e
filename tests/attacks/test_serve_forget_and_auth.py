"""Issue 16 cases 9 and 10, on a real server (REST and gRPC):

- 9: refused versions used to be remembered forever: landing broken versions and deleting
  them grew ``/metrics`` for good and left their ``/ready`` answering 503. Now a version that
  leaves the store leaves ``/metrics`` (every series) and answers 404.
- 10: two ``Authorization`` headers (wrong, then right) were answered 200 (the last won): a
  proxy that checks the first would be bypassed. Now any request with more than one is 400
  (gRPC: two ``authorization`` metadata entries, INVALID_ARGUMENT).
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from hostile_helpers import build_mlp  # noqa: E402
from serve_helpers import Server, free_port, running  # noqa: E402

TOKEN = "s3cret-token-for-tests"  # noqa: S105 - a test fixture
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BROKEN = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("store")
    build_mlp(store)
    grpc_port = free_port()
    with running(
        store,
        tmp_path_factory.mktemp("logs"),
        "--reload-interval",
        "0.2",
        "--token",
        TOKEN,
        "--grpc-port",
        str(grpc_port),
    ) as s:
        s.store = store  # type: ignore[attr-defined]
        s.grpc_port = grpc_port  # type: ignore[attr-defined]
        yield s


def _metrics(server: Server) -> str:
    with server.client(headers=AUTH) as c:
        return c.get("/metrics").text


def _wait(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not true after {timeout}s")


def test_refused_versions_leave_metrics_and_ready_when_their_directory_goes(
    server: Server,
) -> None:
    store: Path = server.store  # type: ignore[attr-defined]
    baseline = _metrics(server)
    versions = [f"9.{i}.0" for i in range(BROKEN)]
    for v in versions:  # a manifest that is not even JSON: refused at once
        staging = store / "mlp" / f".staging-{v}"
        staging.mkdir()
        (staging / "manifest.json").write_text("{not json")
        staging.rename(store / "mlp" / v)
    _wait(lambda: _metrics(server).count('result="refused"') >= BROKEN)
    grown = _metrics(server)
    # the attack's footprint: every refused version has its series, and its /ready is 503
    assert all(f'version="{v}"' in grown for v in versions)
    assert len(grown) > len(baseline) + 40 * BROKEN
    with server.client(headers=AUTH) as c:
        assert c.get(f"/v2/models/mlp/versions/{versions[0]}/ready").status_code == 503
    for v in versions:
        shutil.rmtree(store / "mlp" / v)
    _wait(lambda: not any(f'version="{v}"' in _metrics(server) for v in versions))
    after = _metrics(server)
    # what is left of per-version series is exactly what was there before they landed
    assert _version_series(after) == _version_series(baseline) != set()
    with server.client(headers=AUTH) as c:
        for v in versions[:3]:
            assert c.get(f"/v2/models/mlp/versions/{v}/ready").status_code == 404
        assert c.get("/v2/models/mlp/versions/1.0.0/ready").status_code == 200


def _version_series(metrics: str) -> set[str]:
    """The per-version series (name and labels, not values) in a /metrics text."""
    return {line.rsplit(" ", 1)[0] for line in metrics.splitlines() if 'version="' in line}


def _raw(server: Server, *headers: str) -> bytes:
    request = "GET /v2/models/mlp HTTP/1.1\r\nHost: x\r\n" + "".join(f"{h}\r\n" for h in headers)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall((request + "Connection: close\r\n\r\n").encode())
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    return answer


def test_two_authorization_headers_are_refused(server: Server) -> None:
    wrong, right = "Authorization: Bearer not-the-token", f"Authorization: Bearer {TOKEN}"
    # what each header alone gets: a proxy reading the first would refuse, the server reading
    # the last would accept -- the pair is where they disagree
    assert _raw(server, wrong).startswith(b"HTTP/1.1 401")
    assert _raw(server, right).startswith(b"HTTP/1.1 200")
    for pair in ((wrong, right), (right, wrong), (right, right)):
        answer = _raw(server, *pair)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"2 Authorization headers; send exactly one" in answer


def test_two_authorization_metadata_entries_are_refused_over_grpc(server: Server) -> None:
    grpc = pytest.importorskip("grpc")
    from labkit.serve.grpc_proto import messages

    m = messages()
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:  # type: ignore[attr-defined]
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelMetadata",
            request_serializer=m["ModelMetadataRequest"].SerializeToString,
            response_deserializer=m["ModelMetadataResponse"].FromString,
        )
        request = m["ModelMetadataRequest"](name="mlp")
        right = ("authorization", f"Bearer {TOKEN}")
        assert call(request, metadata=(right,), timeout=10).name == "mlp"
        with pytest.raises(grpc.RpcError) as info:
            call(request, metadata=(("authorization", "Bearer nope"), right), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "2 Authorization headers" in info.value.details()
