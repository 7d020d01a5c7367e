"""Durable experiments in a real kernel: `import labkit` registers nothing; the sweep's saved
outputs are static (no widget left behind); a trial is handed off through the comm (the
per-trial button's request), then again after the kernel is restarted and the run reopened."""

from __future__ import annotations

import os
import queue
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from labkit.notebook.protocol import EXPERIMENT_MIME, PROTOCOL_VERSION

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
WIDGET = "application/vnd.jupyter.widget-view+json"
SWEEP = """
import sys, torch, labkit
sys.path.insert(0, {tests!r})
from exp_train_fn import build, train
exp = labkit.experiment(train, {{"hidden": [4, 8]}}, name="live", metric="val_acc",
                        model_fn=build, example_inputs=torch.randn(1, 8), task="classification")
"""


class Kernel:
    def __init__(self, kc: Any) -> None:
        self.kc = kc
        self.msgs: list[dict[str, Any]] = []

    def run(self, code: str, timeout: float = 240) -> list[dict[str, Any]]:
        """Execute a cell; its iopub messages up to idle (errors fail the test)."""
        start = len(self.msgs)
        msg_id = self.kc.execute(code)
        self.until(
            lambda m: (
                m["msg_type"] == "status"
                and m["parent_header"].get("msg_id") == msg_id
                and m["content"]["execution_state"] == "idle"
            ),
            timeout,
        )
        mine = [m for m in self.msgs[start:] if m["parent_header"].get("msg_id") == msg_id]
        errors = [m["content"] for m in mine if m["msg_type"] == "error"]
        assert not errors, errors
        return mine

    def until(self, pred: Any, timeout: float = 240) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                m = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            self.msgs.append(m)
            if pred(m):
                return m
        raise AssertionError([m["msg_type"] for m in self.msgs][-30:])

    def open_comm(self) -> str:
        comm_id = uuid.uuid4().hex
        self.kc.shell_channel.send(
            self.kc.session.msg(
                "comm_open", {"comm_id": comm_id, "target_name": "labkit.handoff", "data": {}}
            )
        )
        return comm_id

    def request(self, comm_id: str, rtype: str, payload: dict[str, Any]) -> list[dict]:
        rid = uuid.uuid4().hex[:8]
        msg = {"protocol": PROTOCOL_VERSION, "kind": "request", "id": rid, "type": rtype,
               "payload": payload}  # fmt: skip
        self.kc.shell_channel.send(
            self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": msg})
        )
        got: list[dict] = []

        def mine(m: dict[str, Any]) -> bool:
            if m["msg_type"] == "comm_close" and m["content"].get("comm_id") == comm_id:
                raise AssertionError("the kernel closed the comm: target not registered")
            data = m["content"].get("data") if m["msg_type"] == "comm_msg" else None
            if isinstance(data, dict) and data.get("id") == rid:
                got.append(data)
                return data.get("kind") == "reply"
            return False

        self.until(mine)
        return got


def _final_outputs(msgs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the notebook keeps: the last data shown under each display id."""
    shown: dict[str, dict[str, Any]] = {}
    for m in msgs:
        if m["msg_type"] in ("display_data", "update_display_data"):
            did = m["content"].get("transient", {}).get("display_id") or uuid.uuid4().hex
            shown[did] = m["content"]["data"]
    return shown


@pytest.mark.slow
def test_a_trial_is_handed_off_through_the_comm_before_and_after_a_restart(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "LABKIT_STORE": str(tmp_path / "store"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    km, kc = jupyter_client.manager.start_new_kernel(
        kernel_name="python3", cwd=str(tmp_path), env=env
    )
    k = Kernel(kc)
    try:
        # `import labkit` alone registers no comm target: the kernel closes the comm
        k.run("import labkit")
        comm = k.open_comm()
        closed = k.until(lambda m: m["msg_type"] == "comm_close", timeout=30)
        assert closed["content"]["comm_id"] == comm

        msgs = k.run(SWEEP.format(tests=str(Path(__file__).parent)))
        final = list(_final_outputs(msgs).values())
        assert not [o for o in final if WIDGET in o]  # saved outputs need no kernel
        table = next(
            o["text/html"] for o in final if 'labkit-experiment"' in o.get("text/html", "")
        )
        assert "2 of 2 trials, done" in table and "val_acc, higher is better" in table
        data = next(o[EXPERIMENT_MIME] for o in final if EXPERIMENT_MIME in o)
        assert [t["id"] for t in data["trials"]] == [1, 2] and data["goal"] == "max"
        assert all(t["weights_saved"] for t in data["trials"])

        comm = k.open_comm()  # labkit.experiment was used: the target is registered now
        button = {
            "experiment": data["experiment"],
            "run": data["run"],
            "store": data["store"],
            "options": {"benchmark": False},
        }
        got = k.request(comm, "handoff_trial", {**button, "trial": 2})
        assert got[-1]["ok"], got[-1]
        assert [g["payload"]["stage"] for g in got if g["kind"] == "progress"][0] == "freeze"
        result = got[-1]["payload"]["result"]
        assert result["experiment"]["trial"] == 2 and result["version"] == "1.0.0"

        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=60)
        # what the extension evaluates (silently) before it opens the comm
        k.run("import labkit.notebook; assert labkit.notebook._autoregister()")
        comm = k.open_comm()
        refused = k.request(comm, "handoff_trial", {**button, "trial": 1})
        assert not refused[-1]["ok"]
        assert "labkit.experiment.load('live'" in refused[-1]["error"]["message"]
        k.run(
            "import sys, labkit\n"
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from exp_train_fn import build\n"
            "exp = labkit.experiment.load('live', model_fn=build)"
        )
        got = k.request(comm, "handoff_trial", {**button, "trial": 1})
        assert got[-1]["ok"], got[-1]
        again = got[-1]["payload"]["result"]
        assert again["experiment"]["trial"] == 1 and again["experiment"]["run"] == data["run"]
        assert again["version"] == "2.0.0"  # another width: another architecture
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
