"""The comm target in a real IPython kernel: registration on first use (labkit.register), live
progress while the pipeline blocks the kernel's main thread, refusals, and a kernel that keeps
working."""

from __future__ import annotations

import os
import queue
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.notebook.protocol import PROTOCOL_VERSION

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
SETUP = """
import torch, labkit
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
labkit.register(model, (torch.randn(1, 8),), name="tiny", task="classification")

class Raises(torch.nn.Module):
    def forward(self, x):
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
            raise RuntimeError("this forward refuses to be traced")
        return x * 2

labkit.register(Raises(), (torch.randn(1, 3),), name="bad")
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("kernel")
    env = {
        **os.environ,
        "LABKIT_STORE": str(tmp / "store"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3", cwd=str(tmp), env=env)
    try:
        reply = kc.execute_interactive(SETUP, timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
        kc.tmp = tmp
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def open_comm(kc: Any) -> str:
    comm_id = uuid.uuid4().hex
    msg = kc.session.msg(
        "comm_open", {"comm_id": comm_id, "target_name": "labkit.handoff", "data": {}}
    )
    kc.shell_channel.send(msg)
    return comm_id


def send(kc: Any, comm_id: str, data: Any) -> None:
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))


def collect(
    kc: Any, comm_id: str, rid: str | None, timeout: float = 240
) -> list[tuple[float, Any]]:
    """Comm messages for this request, with arrival times, up to and including its reply."""
    out: list[tuple[float, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        content = msg["content"]
        if msg["msg_type"] == "comm_close" and content.get("comm_id") == comm_id:
            raise AssertionError("kernel closed the comm: target not registered")
        if msg["msg_type"] != "comm_msg" or content.get("comm_id") != comm_id:
            continue
        data = content["data"]
        if data.get("id") != rid:
            continue
        out.append((time.monotonic(), data))
        if data.get("kind") == "reply":
            return out
    raise AssertionError(f"no reply within {timeout}s; got {out}")


def request(rtype: str, payload: dict[str, Any] | None = None, rid: str = "r") -> dict[str, Any]:
    return {
        "protocol": PROTOCOL_VERSION,
        "kind": "request",
        "id": rid,
        "type": rtype,
        "payload": payload or {},
    }


def test_target_registered_on_first_use_and_lists_models(kernel: Any) -> None:
    comm = open_comm(kernel)
    send(kernel, comm, request("list_models", rid="lm"))
    ((_, reply),) = collect(kernel, comm, "lm", timeout=30)
    assert reply["ok"], reply
    assert sorted(m["name"] for m in reply["payload"]["models"]) == ["bad", "tiny"]


def test_wrong_version_and_garbage_are_refused(kernel: Any) -> None:
    comm = open_comm(kernel)
    send(kernel, comm, {**request("hello", rid="old"), "protocol": 0})
    ((_, reply),) = collect(kernel, comm, "old", timeout=30)
    assert reply["ok"] is False and reply["error"]["type"] == "ProtocolError"
    assert "version 0" in reply["error"]["message"]
    send(kernel, comm, "garbage")
    ((_, reply),) = collect(kernel, comm, None, timeout=30)
    assert reply["error"]["type"] == "ProtocolError"
    assert kernel.execute_interactive("x = 1 + 1", timeout=30)["content"]["status"] == "ok"


@pytest.mark.slow
def test_handoff_streams_progress_while_running(kernel: Any) -> None:
    comm = open_comm(kernel)
    send(
        kernel,
        comm,
        request("handoff", {"model": "tiny", "options": {"quantize": False}}, rid="h1"),
    )
    got = collect(kernel, comm, "h1")
    reply = got[-1][1]
    assert reply["ok"], reply
    result = reply["payload"]["result"]
    assert result["version"] == "1.0.0" and result["change"] == "first"
    assert Path(result["path"]).is_dir()
    progress = [d["payload"] for _, d in got[:-1]]
    starts = [p["stage"] for p in progress if p["status"] == "start"]
    assert starts == ["freeze", "export", "parity", "optimize", "benchmark", "bundle"]
    # flushed live, while the pipeline still blocked the kernel: the stages arrived spread
    # out over the run, not in one burst with the reply
    times = {(d["payload"]["stage"], d["payload"]["status"]): t for t, d in got[:-1]}
    assert got[-1][0] - times[("freeze", "start")] > 1.0
    assert times[("benchmark", "start")] - times[("freeze", "start")] > 0.3
    # each stage's time is measured in the kernel, where it ran
    done = {p["stage"]: p["elapsed_s"] for p in progress if p["status"] == "done"}
    assert set(done) == set(starts) and sum(done.values()) > 0.5
    assert done["export"] > 0.05  # a real export is never "done in 0.0s"

    # the same model again: a neutral result, the stages after parity skipped
    send(
        kernel,
        comm,
        request("handoff", {"model": "tiny", "options": {"quantize": False}}, rid="h1b"),
    )
    got = collect(kernel, comm, "h1b")
    again = got[-1][1]["payload"]["result"]
    assert (again["change"], again["version"]) == ("none", "1.0.0")
    skipped = [d["payload"]["stage"] for _, d in got[:-1] if d["payload"]["status"] == "skip"]
    assert skipped == ["optimize", "benchmark", "bundle"]


@pytest.mark.slow
def test_failed_export_reports_stage_and_writes_nothing(kernel: Any) -> None:
    comm = open_comm(kernel)
    send(kernel, comm, request("handoff", {"model": "bad"}, rid="h2"))
    reply = collect(kernel, comm, "h2")[-1][1]
    assert reply["ok"] is False
    assert reply["error"]["stage"] == "export"
    assert reply["error"]["type"] == "ExportError"
    assert "refuses to be traced" in reply["error"]["message"]
    assert "\x1b[" not in reply["error"]["message"]
    assert not (kernel.tmp / "store" / "bad").exists()
    assert kernel.execute_interactive("y = 2", timeout=30)["content"]["status"] == "ok"
