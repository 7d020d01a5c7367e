"""Issue 8 section 3, connections: idle and slow clients cannot lock legitimate ones out.

Real servers (subprocesses on 127.0.0.1, some under ``ulimit -n 1024``), real sockets; small
timeouts set by flags keep every test within seconds.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from hostile_helpers import build_mlp, limit_open_files, rss_mib  # noqa: E402
from serve_helpers import running  # noqa: E402

X = {"inputs": [{"name": "input_0", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]}
HEADER_TIMEOUT = 3.0
BODY_TIMEOUT = 4.0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_mlp(root)
    return root


def _infer_ok(url: str) -> float:
    """Seconds until a normal inference got its 200 (fails the test otherwise)."""
    start = time.monotonic()
    with httpx.Client(timeout=30) as c:
        r = c.post(f"{url}/v2/models/mlp/infer", json=X)
    assert r.status_code == 200, r.text
    assert len(r.json()["outputs"][0]["data"]) == 3
    return time.monotonic() - start


@contextlib.contextmanager
def _sockets(n: int, port: int, first: bytes = b"") -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if first:
                s.sendall(first)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


@pytest.fixture()
def many_fds() -> Iterator[None]:
    """This test process needs more than 1,100 descriptors of its own."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if want < 2500:
        pytest.skip(f"the open-file limit ({hard}) is too low for this test's client side")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_1100_idle_connections_with_1024_fds(store: Path, tmp_path: Path, many_fds: None) -> None:
    with running(
        store,
        tmp_path,
        "--reload-interval",
        "0",
        "--header-timeout",
        str(HEADER_TIMEOUT),
        preexec_fn=limit_open_files(1024),
    ) as server:
        with _sockets(1100, server.port):
            elapsed = _infer_ok(server.url)
            print(f"\n1,100 idle connections, ulimit -n 1024: inference 200 in {elapsed:.2f}s")
            assert elapsed < HEADER_TIMEOUT + 1.0, elapsed
            assert server.proc.poll() is None
        assert "Too many open files" not in server.logs()
        assert _infer_ok(server.url) < HEADER_TIMEOUT + 1.0


def test_300_slow_uploads_hold_no_inference_slot(
    store: Path, tmp_path: Path, many_fds: None
) -> None:
    head = (
        b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
        b'\r\nContent-Length: 1000000\r\n\r\n{"inputs": ['
    )
    with running(
        store,
        tmp_path,
        "--reload-interval",
        "0",
        "--max-inflight",
        "256",
        "--body-timeout",
        str(BODY_TIMEOUT),
        "--header-timeout",
        str(HEADER_TIMEOUT),
        preexec_fn=limit_open_files(1024),
    ) as server:
        with _sockets(300, server.port, head) as stalled:
            time.sleep(0.5)
            elapsed = _infer_ok(server.url)
            print(f"\n300 stalled uploads, ulimit -n 1024: inference 200 in {elapsed:.2f}s")
            assert elapsed < BODY_TIMEOUT, elapsed  # not after the stalled ones time out
            stalled[0].settimeout(BODY_TIMEOUT + 5)
            answer = b""
            while chunk := stalled[0].recv(4096):  # headers and body may come apart
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"--body-timeout" in answer
        metrics = server.metrics()
    assert 'labkit_rejected_total{reason="body_timeout"}' in metrics
    assert 'status="500"' not in metrics


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_header_size_cap_holds_for_either_parser(store: Path, tmp_path: Path, parser: str) -> None:
    if parser == "httptools":
        pytest.importorskip("httptools")
    with running(
        store, tmp_path, "--reload-interval", "0", "--http", parser, "--max-header-kb", "64"
    ) as server:
        before = rss_mib(server.proc.pid)
        with _sockets(20, server.port, b"GET /v2 HTTP/1.1\r\nX-Big: ") as socks:
            chunk = b"a" * (256 * 1024)
            answers = []
            for s in socks:
                with contextlib.suppress(OSError):  # the server may close while we send
                    for _ in range(8):  # 2 MiB of one header, never finished
                        s.sendall(chunk)
                s.settimeout(5)
                with contextlib.suppress(OSError):
                    answers.append(s.recv(4096))
            grown = rss_mib(server.proc.pid) - before
        print(f"\n{parser}: RSS grew {grown:.1f} MiB for 20 unfinished 2 MiB headers")
        assert all(a.startswith(b"HTTP/1.1 431") for a in answers if a), answers[:2]
        assert any(answers)
        assert grown < 60, f"{grown:.0f} MiB for 20 unfinished 2 MiB headers"
        assert _infer_ok(server.url) < 5


@pytest.mark.parametrize("parser", ["h11", "auto"])
def test_slowloris_headers_are_cut_at_the_header_timeout(
    store: Path, tmp_path: Path, parser: str
) -> None:
    with running(
        store, tmp_path, "--reload-interval", "0", "--header-timeout", "1.5", "--http", parser
    ) as server:
        with _sockets(1, server.port, b"GET /v2 HTTP/1.1\r\n") as (s,):
            start = time.monotonic()
            s.settimeout(0.3)
            answer = b""
            while time.monotonic() - start < 10:
                with contextlib.suppress(OSError):
                    s.sendall(b"X")  # one byte at a time, never the end of the headers
                try:
                    answer = s.recv(4096)
                    break
                except TimeoutError:
                    continue
            took = time.monotonic() - start
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert 1.0 < took < 4.0, took


def test_idle_keepalive_connection_is_closed(store: Path, tmp_path: Path) -> None:
    with running(store, tmp_path, "--reload-interval", "0", "--keepalive-timeout", "1") as server:
        with _sockets(1, server.port) as (s,):
            s.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            got = s.recv(4096)
            start = time.monotonic()
            while chunk := s.recv(4096):  # the rest of the answer, then the server's close
                got += chunk
            took = time.monotonic() - start
        assert got.startswith(b"HTTP/1.1 200")
        assert json.loads(got.split(b"\r\n\r\n", 1)[1])["name"] == "labkit"
        assert 0.5 < took < 3, took
