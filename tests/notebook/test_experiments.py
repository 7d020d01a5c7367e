"""``labkit.experiment``: trials run and saved, CPU latency measured, Pareto front, best(),
failures and interrupts keep finished trials, worker processes, hand-off of a trial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from exp_train_fn import train

import labkit
from labkit.bundle import verify
from labkit.errors import InputError
from labkit.notebook.experiment_view import figure_bundle, table_html
from labkit.notebook.experiments import expand_params, load
from labkit.pipeline.options import HandoffOptions


def test_grid_and_list_params() -> None:
    assert expand_params({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert expand_params([{"a": 1}, {"a": 5}]) == [{"a": 1}, {"a": 5}]
    with pytest.raises(InputError, match=r"params\['a'\] = 3 is not a list.*\{'a': \[3\]\}"):
        expand_params({"a": 3})
    with pytest.raises(InputError, match="params is empty"):
        expand_params([])


def test_a_sweep_is_measured_saved_ranked_and_handed_off(tmp_path: Path) -> None:
    x = torch.randn(1, 8)
    exp = labkit.experiment(
        train,
        {"hidden": [4, 16, 64, 256]},
        name="mlp-width",
        example_inputs=x,
        task="classification",
        store=tmp_path / "experiments",
        widgets=False,
    )
    assert [t.id for t in exp.trials] == [1, 2, 3, 4] and not exp.interrupted
    assert exp.metric == "val_acc"
    assert all(
        t.status == "ok" and t.latency_ms is not None and t.latency_ms > 0 for t in exp.trials
    )
    saved = load("mlp-width", store=tmp_path / "experiments")
    assert [r["params"]["hidden"] for r in saved] == [4, 16, 64, 256]
    assert saved[2]["metrics"]["val_acc"] == pytest.approx(exp.trials[2].metrics["val_acc"])
    assert saved[2]["latency_ms"] == pytest.approx(exp.trials[2].latency_ms)
    run_info = json.loads((exp.path / "run.json").read_text())
    assert run_info["planned"][3] == {"hidden": 256}

    best = exp.best()
    assert best.metrics["val_acc"] == max(t.metrics["val_acc"] for t in exp.trials)
    fastest = min(t.latency_ms or 0 for t in exp.trials)
    capped = exp.best(max_latency_ms=fastest)
    assert capped.latency_ms == fastest
    assert exp.best("loss").metrics["loss"] == min(t.metrics["loss"] for t in exp.trials)
    with pytest.raises(InputError, match="no finished trial has a finite 'top5'"):
        exp.best("top5")

    html = table_html(exp)
    assert html.count("<tr>") == 5 and "★" in html and "CPU latency (ms)" in html
    fig = figure_bundle(exp)["application/vnd.plotly.v1+json"]
    trials, front = fig["data"]
    assert len(trials["x"]) == 4 and trials["y"] == [t.metrics["val_acc"] for t in exp.trials]
    assert 1 <= len(front["x"]) <= 4
    # the front is sorted by latency and its accuracy only goes up
    assert list(front["x"]) == sorted(front["x"])
    assert list(front["y"]) == sorted(front["y"])

    result = exp.handoff(best, store=tmp_path / "bundles", options=HandoffOptions(benchmark=False))
    assert result.name == "mlp-width" and result.version == "1.0.0"
    verify(result.path)
    assert exp.results[best.id] is result


def test_failed_trials_are_recorded_and_an_interrupt_keeps_the_finished(tmp_path: Path) -> None:
    def flaky(hidden: int) -> dict[str, Any]:
        if hidden == 2:
            raise ValueError("diverged\nmore")
        if hidden == 3:
            raise KeyboardInterrupt
        return {"acc": hidden / 10}

    exp = labkit.experiment(
        flaky, {"hidden": [1, 2, 3, 4]}, name="flaky", store=tmp_path, widgets=False
    )
    assert exp.interrupted and [t.id for t in exp.trials] == [1, 2]
    assert exp.trials[1].status == "failed" and exp.trials[1].error == "ValueError: diverged"
    assert exp.trials[0].latency_ms is None  # no model returned: nothing to time
    assert len(load("flaky", store=tmp_path)) == 2
    assert "interrupted" in table_html(exp)
    with pytest.raises(InputError, match="trial #1 kept no model"):
        exp.handoff(1)


def test_bad_names_and_results_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not usable as a folder name"):
        labkit.experiment(train, {"hidden": [4]}, name="../up", store=tmp_path)
    exp = labkit.experiment(
        lambda hidden: 0.5, {"hidden": [4]}, name="bad", store=tmp_path, widgets=False
    )
    assert exp.trials[0].status == "failed"
    assert "return {'model': model" in exp.trials[0].error


def test_worker_processes(tmp_path: Path) -> None:
    exp = labkit.experiment(
        train,
        [{"hidden": 4, "steps": 5}, {"hidden": 8, "steps": 5}],
        name="parallel",
        example_inputs=torch.randn(1, 8),
        store=tmp_path,
        workers=2,
        widgets=False,
    )
    assert [t.id for t in exp.trials] == [1, 2]
    assert all(t.status == "ok" and t.latency_ms for t in exp.trials), exp.text()
    assert isinstance(exp.trials[0].model, torch.nn.Module)


# -- in a real kernel: live outputs, then the "hand off this trial" button ------------------

KERNEL_CELL = """
import sys, torch, labkit
sys.path.insert(0, {tests!r})
from exp_train_fn import train
exp = labkit.experiment(train, {{"hidden": [4, 8, 16, 32]}}, name="live",
                        example_inputs=torch.randn(1, 8), task="classification")
print("trials", len(exp.trials))
"""


@pytest.mark.slow
def test_live_view_and_hand_off_button_in_a_kernel(tmp_path: Path) -> None:
    import os
    import queue

    jupyter_client = pytest.importorskip("jupyter_client")
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "LABKIT_STORE": str(tmp_path / "store"),
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    km, kc = jupyter_client.manager.start_new_kernel(
        kernel_name="python3", cwd=str(tmp_path), env=env
    )
    try:
        msgs: list[dict[str, Any]] = []

        def until(pred: Any, timeout: float = 240) -> None:
            import time

            end = time.monotonic() + timeout
            while time.monotonic() < end:
                try:
                    m = kc.get_iopub_msg(timeout=0.5)
                except queue.Empty:
                    continue
                msgs.append(m)
                if pred(m):
                    return
            raise AssertionError([m["msg_type"] for m in msgs][-30:])

        msg_id = kc.execute(KERNEL_CELL.format(tests=str(Path(__file__).parent)))
        until(
            lambda m: (
                m["msg_type"] == "status"
                and m["parent_header"].get("msg_id") == msg_id
                and m["content"]["execution_state"] == "idle"
            )
        )
        errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
        assert not errors, errors
        updates = [m["content"]["data"] for m in msgs if m["msg_type"] == "update_display_data"]
        tables = [d["text/html"] for d in updates if "labkit-experiment" in d.get("text/html", "")]
        assert "4 of 4 trials, done" in tables[-1] and tables[-1].count("<tr>") == 5
        plots = [d for d in updates if "application/vnd.plotly.v1+json" in d]
        assert len(plots[-1]["application/vnd.plotly.v1+json"]["data"][0]["x"]) == 4
        # The buttons: one per trial, found by their model state.
        buttons = {
            m["content"]["data"]["state"]["description"]: m["content"]["comm_id"]
            for m in msgs
            if m["msg_type"] == "comm_open"
            and m["content"]["data"]["state"].get("_model_name") == "ButtonModel"
        }
        assert sorted(buttons) == [f"hand off trial #{i}" for i in range(1, 5)]
        kc.shell_channel.send(
            kc.session.msg(
                "comm_msg",
                {
                    "comm_id": buttons["hand off trial #2"],
                    "data": {"method": "custom", "content": {"event": "click"}},
                },
            )
        )
        until(
            lambda m: (
                m["msg_type"] in ("display_data", "stream")
                and ("labkit-result" in str(m["content"]) or "failed" in str(m["content"]))
            )
        )
        shown = str(msgs[-1]["content"])
        assert "labkit-result" in shown, shown
        assert (tmp_path / "store" / "live" / "1.0.0" / "manifest.json").is_file()
        assert len(list((tmp_path / "experiments" / "live").glob("*/trial-*.json"))) == 4
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
