"""``labkit.progress``: panels and shared axes, divergence flagged, Stop honoured in a real
kernel (button click while the cell runs, and the kernel interrupt), static figure saved."""

from __future__ import annotations

import io
import math
import os
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.notebook.charts import PLOTLY_MIME, metric_panel, split_of
from labkit.notebook.objective import pareto_front
from labkit.notebook.progress import TrainingProgress

pytest.importorskip("plotly")
ROOT = Path(__file__).resolve().parents[2]


def test_panels_pair_train_and_validation_on_one_axis() -> None:
    out = io.StringIO()
    with TrainingProgress("fit", every=0.0, stream=out, widgets=False) as p:
        for i in range(6):
            p.log(train_loss=0.05 * (6 - i), val_loss=0.388, val_acc=0.5 + 0.05 * i, lr=1e-3)
    fig = p.figure()
    axes = {t.name: t.yaxis for t in fig.data}
    assert axes == {"train_loss": "y", "val_loss": "y", "val_acc": "y2", "lr": "y3"}
    dash = {t.name: t.line.dash for t in fig.data}
    assert dash["train_loss"] == "solid" and dash["val_loss"] == "dash"
    color = {t.name: t.line.color for t in fig.data}
    assert color["train_loss"] == color["val_loss"]  # one metric, two splits
    losses = [y for t in fig.data if t.yaxis == "y" for y in t.y]
    assert max(losses) == pytest.approx(0.388) and min(losses) == pytest.approx(0.05)
    assert fig.layout.yaxis.type in (None, "linear")  # shared and autoscaled over both
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["linear", "log"]
    assert fig.layout.updatemenus[0].buttons[1].args[0]["yaxis.type"] == "log"
    assert list(fig.data[0].x) == [1, 2, 3, 4, 5, 6]


def test_metric_names_map_to_panels_and_splits() -> None:
    assert [metric_panel(n) for n in ("loss", "val_loss", "top1", "accuracy", "lr", "grad")] == [
        "loss",
        "loss",
        "accuracy",
        "accuracy",
        "learning rate",
        "other",
    ]
    assert split_of("val_loss") == ("val", "loss")
    assert split_of("validation/acc") == ("val", "acc")
    assert split_of("loss") == ("train", "loss")


def test_non_finite_values_are_flagged_not_dropped() -> None:
    out = io.StringIO()
    with TrainingProgress("fit", every=0.0, stream=out, widgets=False) as p:
        for i, loss in enumerate([0.5, 0.3, float("nan"), float("inf"), 0.1]):
            p.log(loss=loss, acc=0.1 * i)
    assert p.diverged == {"loss": 3}
    assert "⚠ loss diverged at step 3 (nan)" in out.getvalue()
    assert p.text().startswith("fit step 5 (finished, diverged): loss DIVERGED at step 3")
    fig = p.figure()
    assert "loss diverged at step 3" in fig.layout.title.text
    assert list(fig.data[0].y) == [0.5, 0.3, None, None, 0.1]
    bundle = p._repr_mimebundle_()
    assert "diverged at step 3" in bundle["text/html"]
    assert bundle[PLOTLY_MIME]["data"][0]["name"] == "loss"


def test_text_fallback_and_padding() -> None:
    out = io.StringIO()
    with TrainingProgress("fit", every=0.0, stream=out, widgets=False) as p:
        for i in range(3):
            p.log(loss=1.0 / (i + 1))
        p.log(acc=0.5)
    assert out.getvalue().endswith("fit step 4 (finished): loss=0.3333 acc=0.5\n")
    assert math.isnan(p.history["acc"][0]) and p.history["acc"][3] == 0.5


def test_pareto_front_keeps_the_undominated_points() -> None:
    pts = [(1.0, 0.80), (2.0, 0.90), (3.0, 0.85), (0.5, 0.70), (2.0, 0.88)]
    assert pareto_front(pts) == [3, 0, 1]
    assert pareto_front(pts, goal="max") == [3, 0, 1]
    # a loss: lower is better, so the front is the fast-and-low points
    losses = [(1.0, 0.30), (2.0, 0.10), (3.0, 0.20), (0.5, 0.50), (2.0, 0.12)]
    assert pareto_front(losses, goal="min") == [3, 0, 1]
    assert pareto_front([(1.0, 0.3), (2.0, 0.1)], goal="max") == [0]  # the old reading


def test_a_constant_series_gets_a_readable_axis() -> None:
    with TrainingProgress("fit", every=0.0, stream=io.StringIO(), widgets=False) as p:
        for i in range(5):
            p.log(loss=1.0 / (i + 1), lr=1e-3)
    fig = p.figure()
    lr_axis = fig.layout.yaxis2  # panels: loss, learning rate
    assert {t.name: t.yaxis for t in fig.data}["lr"] == "y2"
    assert list(lr_axis.range) == pytest.approx([5e-4, 1.5e-3])  # not -0.5…1, where 1e-3 is 0
    assert fig.layout.yaxis.range is None  # a moving loss autoscales
    linear = fig.layout.updatemenus[0].buttons[0].args[0]
    assert linear["yaxis2.range"] == pytest.approx([5e-4, 1.5e-3])
    assert linear["yaxis.autorange"] is True


def test_the_final_title_says_why_the_run_ended() -> None:
    def run(losses: list[float], **kw: Any) -> TrainingProgress:
        with TrainingProgress("fit", every=0.0, stream=io.StringIO(), widgets=False, **kw) as p:
            for loss in losses:
                if p.should_stop:
                    break
                p.log(loss=loss)
        return p

    done = run([0.5, 0.4])
    assert done.ended == "finished" and "finished at step 2" in done.figure().layout.title.text
    assert done.text().startswith("fit step 2 (finished)")
    diverged = run([0.5, float("nan"), 0.4])
    assert diverged.ended == "finished, diverged" and diverged.steps == 3
    # stop_on_nonfinite: a NaN run stops at the next check
    stopped = run([0.5, float("nan"), 0.4, 0.3], stop_on_nonfinite=True)
    assert stopped.steps == 2 and stopped.should_stop
    assert stopped.ended == "stopped (loss was nan at step 2)"
    assert "stopped (loss was nan at step 2) at step 2" in stopped.figure().layout.title.text
    assert "stopped (loss was nan at step 2)" in stopped._repr_mimebundle_()["text/html"]
    with pytest.raises(ValueError):
        with TrainingProgress("fit", every=0.0, stream=io.StringIO(), widgets=False) as p:
            p.log(loss=1.0)
            raise ValueError("data loader broke")
    assert p.ended == "ended by ValueError"


# -- a real kernel: the Stop button and the interrupt reach a running loop --------------

jupyter_client = pytest.importorskip("jupyter_client")

LOOP = """
import time, labkit
with labkit.progress("fit", every=0.05) as p:
    for step in range(3000):
        if p.should_stop:
            break
        p.log(loss=1.0 / (step + 1), val_loss=0.5)
        time.sleep(0.01)
print("ended at", p.steps, "stopped", p.should_stop)
"""


@pytest.fixture(scope="module")
def kc() -> Iterator[Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    km, client = jupyter_client.manager.start_new_kernel(kernel_name="python3", env=env)
    client.km = km
    try:
        yield client
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)


def _drain(kc: Any, until: Any, timeout: float) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(msg)
        if until(msg):
            return seen
    raise AssertionError(f"timed out; saw {[m['msg_type'] for m in seen][-20:]}")


def _idle(msg: dict[str, Any], parent: str) -> bool:
    return (
        msg["msg_type"] == "status"
        and msg["content"]["execution_state"] == "idle"
        and msg["parent_header"].get("msg_id") == parent
    )


def _stdout(msgs: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")


def test_stop_button_ends_the_running_loop_and_a_static_figure_remains(kc: Any) -> None:
    msg_id = kc.execute(LOOP)

    def button_opened(m: dict[str, Any]) -> bool:
        state = m["content"].get("data", {}).get("state", {})
        return m["msg_type"] == "comm_open" and state.get("_model_name") == "ButtonModel"

    opened = _drain(kc, button_opened, 60)
    comm_id = opened[-1]["content"]["comm_id"]
    time.sleep(0.5)  # the loop is running
    click = kc.session.msg(
        "comm_msg",
        {"comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}},
    )
    kc.shell_channel.send(click)
    rest = _drain(kc, lambda m: _idle(m, msg_id), 60)
    text = _stdout(rest)
    steps = int(text.split("ended at ")[1].split()[0])
    assert "stopped True" in text and 0 < steps < 3000, text
    final = [m for m in rest if m["msg_type"] == "update_display_data"]
    assert final, "the live widget was not replaced by a static figure"
    data = final[-1]["content"]["data"]
    fig = data[PLOTLY_MIME]
    assert {t["name"]: t["yaxis"] for t in fig["data"]} == {"loss": "y", "val_loss": "y"}
    assert len(fig["data"][0]["y"]) == steps
    assert "(stopped (Stop pressed))" in data["text/plain"]
    assert f"stopped (Stop pressed) at step {steps}" in fig["layout"]["title"]["text"]


def test_kernel_interrupt_asks_the_loop_to_stop_instead_of_raising(kc: Any) -> None:
    msg_id = kc.execute(LOOP)
    _drain(kc, lambda m: m["msg_type"] == "display_data", 60)
    time.sleep(0.5)
    kc.km.interrupt_kernel()
    rest = _drain(kc, lambda m: _idle(m, msg_id), 60)
    assert not [m for m in rest if m["msg_type"] == "error"]
    assert "stopped True" in _stdout(rest)
