"""Throughput of ``handoff serve`` with micro-batching, without it, and of a naive server.

One run, three servers, each in its own process, all started up front, then hit in interleaved
rounds (A B C A B C ...) by the same closed-loop load (``--concurrency`` keep-alive connections
on loopback, ``--duration`` seconds per server in total, after a warm-up); medians over rounds
are reported, because the machine is shared and noisy:

- ``labkit batched``   : ``python -m labkit.serve serve`` with ``--max-batch-size 32``
- ``labkit unbatched`` : the same with ``--max-batch-size 1``
- ``naive ORT``        : the server below: ``http.server`` + one ``InferenceSession``, one
                          inference at a time under a lock, JSON in and out (what a first
                          version of a service usually looks like)

    python benchmarks/serve_bench.py                       # builds a 512-2048-2048-10 MLP
    python benchmarks/serve_bench.py --bundle STORE/mlp/1.0.0 --concurrency 32 --duration 10

The client is a small asyncio HTTP/1.1 client on raw sockets (pre-encoded requests), so it
costs little next to the servers; it still shares the machine's cores with them, so read the
numbers as ratios. ``LoadResult`` / ``closed_loop`` are reused by ``tests/serve/test_load.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- load client
def http_post(path: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    latency: float
    index: int  # which payload was sent
    lag: float = 0.0  # open loop: how late the client sent it


@dataclass
class LoadResult:
    replies: list[Reply] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def ok(self) -> list[Reply]:
        return [r for r in self.replies if r.status == 200]

    def throughput(self) -> float:
        return len(self.ok()) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float, statuses: tuple[int, ...] = (200,)) -> float:
        lat = [r.latency for r in self.replies if r.status in statuses]
        return float(np.percentile(lat, q)) if lat else float("nan")


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _connection(
    host: str,
    port: int,
    payloads: list[bytes],
    start: int,
    count: int,
    stop_at: float,
    result: LoadResult,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for k in range(count):
            if time.perf_counter() > stop_at:
                break
            index = (start + k) % len(payloads)
            t0 = time.perf_counter()
            writer.write(payloads[index])
            try:
                status, headers, body = await _read_reply(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")
                return
            result.replies.append(Reply(status, headers, body, time.perf_counter() - t0, index))
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


def closed_loop(
    host: str,
    port: int,
    payloads: list[bytes],
    *,
    concurrency: int,
    per_connection: int,
    duration: float,
) -> LoadResult:
    """``concurrency`` connections, each sending up to ``per_connection`` requests back to back
    (payload ``i`` for connection ``c`` and step ``k`` is ``(c * per_connection + k) % n``)."""
    result = LoadResult()

    async def main() -> None:
        stop_at = time.perf_counter() + duration
        await asyncio.gather(
            *(
                _connection(
                    host, port, payloads, c * per_connection, per_connection, stop_at, result
                )
                for c in range(concurrency)
            )
        )

    t0 = time.perf_counter()
    asyncio.run(main())
    result.elapsed = time.perf_counter() - t0
    return result


def open_loop(
    host: str,
    port: int,
    payloads: list[bytes],
    *,
    rate: float,
    count: int,
    max_connections: int = 512,
) -> LoadResult:
    """Send ``count`` requests at ``rate`` per second whatever the replies (open loop), each on
    an idle keep-alive connection or a new one. Latency counts from the scheduled send time,
    so a client-side delay is not hidden (no coordinated omission)."""
    result = LoadResult()

    async def main() -> None:
        idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        slots = asyncio.Semaphore(max_connections)
        start = time.perf_counter()

        async def one(i: int, due: float) -> None:
            async with slots:
                conn = idle.pop() if idle else await asyncio.open_connection(host, port)
                reader, writer = conn
                sent = time.perf_counter()
                writer.write(payloads[i % len(payloads)])
                try:
                    status, headers, body = await _read_reply(reader)
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                    writer.close()
                    return
                result.replies.append(
                    Reply(
                        status,
                        headers,
                        body,
                        time.perf_counter() - sent,
                        i % len(payloads),
                        lag=sent - due,
                    )
                )
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                else:
                    idle.append(conn)

        tasks = []
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        for _, writer in idle:
            writer.close()

    t0 = time.perf_counter()
    asyncio.run(main())
    result.elapsed = time.perf_counter() - t0
    return result


# ----------------------------------------------------------------------------- naive server
def naive_server(model_path: str, port: int) -> None:
    """One ORT session, one inference at a time, JSON only: a baseline, not a product."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    lock = threading.Lock()
    in_name = session.get_inputs()[0].name

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            tensor = doc["inputs"][0]
            x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
            with lock:
                outputs = session.run(None, {in_name: x})
            body = json.dumps(
                {
                    "model_name": "naive",
                    "outputs": [
                        {
                            "name": o.name,
                            "datatype": "FP32",
                            "shape": list(v.shape),
                            "data": v.ravel().tolist(),
                        }
                        for o, v in zip(session.get_outputs(), outputs)
                    ],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# ----------------------------------------------------------------------------- orchestration
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status in (200, 405, 501):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def build_bundle(store: Path, sizes: tuple[int, ...]) -> Path:
    import torch

    import labkit
    from labkit.pipeline import HandoffOptions, run

    torch.manual_seed(0)
    layers: list[Any] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).eval()
    spec = labkit.register(model, (torch.randn(2, sizes[0]),), name="benchmlp")
    result = run(spec, store=store, options=HandoffOptions(quantize=False, benchmark=False))
    return Path(result.to_dict()["path"])


def _start(cmd: list[str], port: int, ready_path: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(port, ready_path, proc)
    except RuntimeError:
        proc.kill()
        raise
    return proc


def measure(
    servers: list[tuple[str, int, str]], bodies: list[bytes], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Interleaved rounds (A B C A B C ...), medians over rounds: the machine is noisy."""
    payloads = {name: [http_post(path, b) for b in bodies] for name, _, path in servers}
    for name, port, _ in servers:  # warm-up
        closed_loop(
            "127.0.0.1",
            port,
            payloads[name],
            concurrency=args.concurrency,
            per_connection=10**9,
            duration=args.warmup,
        )
    per_round: dict[str, list[LoadResult]] = {name: [] for name, _, _ in servers}
    for _ in range(args.rounds):
        for name, port, _ in servers:
            per_round[name].append(
                closed_loop(
                    "127.0.0.1",
                    port,
                    payloads[name],
                    concurrency=args.concurrency,
                    per_connection=10**9,
                    duration=args.duration / args.rounds,
                )
            )
    rows = []
    for name, results in per_round.items():
        rows.append(
            {
                "server": name,
                "throughput_rps": round(statistics.median(r.throughput() for r in results), 1),
                "rounds_rps": [round(r.throughput(), 1) for r in results],
                "p50_ms": round(statistics.median(r.percentile(50) for r in results) * 1e3, 2),
                "p99_ms": round(statistics.median(r.percentile(99) for r in results) * 1e3, 2),
                "requests": sum(len(r.replies) for r in results),
                "non_200": sum(len(r.replies) - len(r.ok()) for r in results),
                "errors": sum(len(r.errors) for r in results),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=None, help="default: build a benchmark MLP")
    p.add_argument("--sizes", default="512,2048,2048,10", help="MLP layer sizes when building")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=9.0, help="seconds per server, in total")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--warmup", type=float, default=1.5)
    p.add_argument("--rows", type=int, default=1, help="rows per request")
    p.add_argument("--json", type=Path, default=None, help="also write results here")
    p.add_argument("--naive-server", nargs=2, metavar=("MODEL", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.naive_server:
        naive_server(args.naive_server[0], int(args.naive_server[1]))
        return 0

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        bundle = args.bundle or build_bundle(
            Path(tmp), tuple(int(s) for s in args.sizes.split(","))
        )
        from labkit.bundle import read_manifest

        manifest = read_manifest(bundle)
        spec = manifest.signature.inputs[0]
        width = int(spec.shape[1])
        rng = np.random.default_rng(0)
        bodies = [
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": spec.name,
                            "shape": [args.rows, width],
                            "datatype": "FP32",
                            "data": rng.standard_normal(args.rows * width)
                            .astype(np.float32)
                            .tolist(),
                        }
                    ]
                }
            ).encode()
            for _ in range(64)
        ]
        model_file = bundle / manifest.variant().file
        name, version = manifest.name, manifest.version
        infer_path = f"/v2/models/{name}/versions/{version}/infer"
        servers, procs = [], []
        try:
            for label, batch in (("labkit batched (max batch 32)", 32), ("labkit unbatched", 1)):
                port = _free_port()
                procs.append(
                    _start(
                        [
                            sys.executable,
                            "-m",
                            "labkit.serve",
                            "serve",
                            str(bundle),
                            "--port",
                            str(port),
                            "--max-batch-size",
                            str(batch),
                            "--max-inflight",
                            "4096",
                            "--max-queue",
                            "4096",
                            "--log-level",
                            "warning",
                        ],
                        port,
                        "/v2/health/ready",
                    )
                )
                servers.append((label, port, infer_path))
            port = _free_port()
            procs.append(
                _start(
                    [sys.executable, __file__, "--naive-server", str(model_file), str(port)],
                    port,
                    "/",
                )
            )
            servers.append(("naive ORT (http.server, 1 at a time)", port, "/infer"))
            rows = measure(servers, bodies, args)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)

    base = rows[-1]["throughput_rps"] or float("nan")
    print(
        f"\nmodel {name} {version}, {args.rows} row(s)/request, concurrency "
        f"{args.concurrency}, {args.duration:.0f}s per server in {args.rounds} interleaved "
        f"rounds (medians), {os.cpu_count()} CPUs\n"
    )
    print(f"{'server':40} {'req/s':>9} {'x naive':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8}")
    for r in rows:
        print(
            f"{r['server']:40} {r['throughput_rps']:9.1f} {r['throughput_rps'] / base:8.2f} "
            f"{r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['non_200'] + r['errors']:8d}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
