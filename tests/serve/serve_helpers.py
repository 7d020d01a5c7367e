"""Helpers for the serving tests: tiny real bundles (built by the real pipeline) and real
servers started as subprocesses on 127.0.0.1 with a random free port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def build_store(root: Path) -> dict[str, Path]:
    """mlp 1.0.0, 1.1.0, 1.2.0 (same architecture, new weights each) and a two-input model."""
    torch = pytest.importorskip("torch")
    import labkit
    from labkit.pipeline import HandoffOptions, run

    opts = HandoffOptions(quantize=False, benchmark=False)

    class TwoInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.lin = torch.nn.Linear(4, 2)

        def forward(self, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.lin(self.emb(ids).mean(dim=1)) * scale

    paths = {}
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        mlp = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
        ).eval()
        spec = labkit.register(mlp, (torch.randn(2, 8),), name="mlp")
        result = run(spec, store=root, options=opts).to_dict()
        paths[f"mlp-{result['version']}"] = Path(result["path"])

    class Seq(torch.nn.Module):
        """Compute-bound per row (128 positions through a 64-2048-2048-8 MLP, ~10 ms a row
        on one thread), so that its serving capacity is set by inference, not by HTTP."""

        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(64, 2048)
            self.b = torch.nn.Linear(2048, 2048)
            self.c = torch.nn.Linear(2048, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(torch.relu(self.b(torch.relu(self.a(x))))).mean(dim=1)

    torch.manual_seed(4)
    spec = labkit.register(Seq().eval(), (torch.randn(2, 128, 64),), name="seq")
    paths["seq"] = Path(run(spec, store=root, options=opts).to_dict()["path"])
    torch.manual_seed(3)
    two = TwoInputs().eval()
    spec = labkit.register(two, (torch.randint(0, 10, (2, 5)), torch.rand(2, 1)), name="two")
    result = run(spec, store=root, options=opts).to_dict()
    paths["two"] = Path(result["path"])
    return paths


@dataclass(frozen=True)
class Bundles:
    root: Path  # a store holding every version (never served directly; copy what you need)
    paths: dict[str, Path]

    def store_with(self, dest: Path, *keys: str) -> Path:
        """A fresh store holding copies of the given bundles."""
        for key in keys:
            src = self.paths[key]
            shutil.copytree(src, dest / src.parent.name / src.name)
        return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)  # type: ignore[arg-type]

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    source: Path,
    log_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    preexec_fn: Callable[[], None] | None = None,
) -> Server:
    port = free_port()
    log = log_dir / f"server-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "handoff",
        "serve",
        str(source),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "info",
        *args,
    ]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, preexec_fn=preexec_fn
        )  # noqa: PLW1509 - sets ulimit only
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return Server(proc, url, port, log)
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server not ready after {timeout}s:\n{log.read_text()}")


def stop_server(server: Server, timeout: float = 30.0) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return int(server.proc.returncode)


@contextlib.contextmanager
def running(source: Path, log_dir: Path, *args: str, **kw: object) -> Iterator[Server]:
    server = start_server(source, log_dir, *args, **kw)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        stop_server(server)
