"""``labkit.experiment``: metric direction everywhere (★, Pareto front, best(), axis label),
trials saved with their weights and handed off after a restart (a fresh process), random
search and Optuna, failures and interrupts, worker processes, the per-trial button's data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from exp_train_fn import build, train

import labkit
from labkit.bundle import read_manifest, verify
from labkit.errors import InputError
from labkit.notebook.experiment_view import figure_bundle, table_html, trials_bundle
from labkit.notebook.experiments import expand_params, load
from labkit.notebook.objective import infer_goal, objective
from labkit.notebook.protocol import EXPERIMENT_MIME
from labkit.pipeline.options import HandoffOptions

ROOT = Path(__file__).resolve().parents[2]
PLOTLY = "application/vnd.plotly.v1+json"


def test_grid_and_list_params() -> None:
    assert expand_params({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert expand_params([{"a": 1}, {"a": 5}]) == [{"a": 1}, {"a": 5}]
    with pytest.raises(InputError, match=r"params\['a'\] = 3 is not a list.*\{'a': \[3\]\}"):
        expand_params({"a": 3})
    with pytest.raises(InputError, match="params is empty"):
        expand_params([])
    with pytest.raises(InputError, match=r"is a range: a grid needs lists.*random"):
        expand_params({"lr": labkit.experiment.loguniform(1e-4, 1e-1)})


def test_metric_direction_from_the_name_or_the_goal() -> None:
    minimise = ["val_loss", "loss", "train_err", "valMSE", "rmse", "perplexity", "latency_ms"]
    maximise = ["val_acc", "accuracy", "f1", "valAuc", "top1", "precision", "recall", "mAP"]
    assert [infer_goal(n) for n in minimise] == ["min"] * len(minimise)
    assert [infer_goal(n) for n in maximise] == ["max"] * len(maximise)
    # whole words only: "acc" inside "accumulated" is no accuracy
    assert infer_goal("accumulated_steps") is None and infer_goal("score") is None
    assert objective("val_loss").label == "val_loss, lower is better"
    assert objective("score", "max").label == "score, higher is better"
    with pytest.raises(InputError) as err:
        objective("score")
    assert "metric='score', goal='max' if higher is better" in str(err.value)
    assert "metric='score', goal='min' if lower is better" in str(err.value)
    with pytest.raises(InputError, match="goal='up'.*goal='min'.*goal='max'"):
        objective("loss", "up")
    with pytest.raises(InputError, match="pass metric=.*metric='val_acc'.*metric='val_loss'"):
        objective(None)


def test_no_metric_is_an_error_before_any_training(tmp_path: Path) -> None:
    calls: list[int] = []

    def counted(hidden: int) -> dict[str, Any]:
        calls.append(hidden)
        return {"val_acc": 1.0}

    with pytest.raises(InputError, match="no metric to rank trials by"):
        labkit.experiment(counted, {"hidden": [1]}, name="m", store=tmp_path, widgets=False)
    with pytest.raises(InputError, match="does not say whether higher or lower"):
        labkit.experiment(
            counted, {"hidden": [1]}, name="m", metric="score", store=tmp_path, widgets=False
        )
    assert calls == [] and not (tmp_path / "m").exists()


def test_a_sweep_ranked_by_a_loss_marks_the_lowest(tmp_path: Path) -> None:
    exp = labkit.experiment(
        train,
        {"hidden": [4, 16, 64]},
        name="mlp-width",
        metric="loss",
        model_fn=build,
        example_inputs=torch.randn(1, 8),
        task="classification",
        store=tmp_path / "experiments",
        widgets=False,
    )
    assert [t.id for t in exp.trials] == [1, 2, 3] and not exp.interrupted
    assert exp.objective.goal == "min"
    assert all(t.status == "ok" and t.latency_ms and t.weights for t in exp.trials), exp.text()
    losses = {t.id: t.metrics["loss"] for t in exp.trials}
    lowest = min(losses, key=losses.__getitem__)
    assert exp.best().id == lowest
    assert exp.best("val_acc").metrics["val_acc"] == max(t.metrics["val_acc"] for t in exp.trials)
    with pytest.raises(InputError, match="no finished trial has a finite 'top5'"):
        exp.best("top5")

    html = table_html(exp)
    assert html.count("<tr>") == 4 and "ranked by <b>loss, lower is better</b>" in html
    row = next(r for r in html.split("<tr>") if r.startswith(f"<td>#{lowest}"))
    assert "★" in row and "best" in row  # the lowest loss is on the front, and best
    fig = figure_bundle(exp)[PLOTLY]
    trials, front = fig["data"]
    assert fig["layout"]["yaxis"]["title"]["text"] == "loss, lower is better"
    assert trials["y"] == [t.metrics["loss"] for t in exp.trials]
    # the front, by latency, only gets better: for a loss, lower
    assert list(front["x"]) == sorted(front["x"])
    assert list(front["y"]) == sorted(front["y"], reverse=True)
    assert min(front["y"]) == losses[lowest]

    data = trials_bundle(exp)[EXPERIMENT_MIME]
    assert data["metric"] == "loss" and data["goal"] == "min" and data["run"] == exp.run
    assert [r["best"] for r in data["trials"]] == [t.id == lowest for t in exp.trials]
    assert all(r["weights_saved"] for r in data["trials"])
    json.dumps(data)


@pytest.mark.slow
def test_a_reopened_run_hands_a_trial_off_from_its_saved_weights(tmp_path: Path) -> None:
    """The kernel restart, for real: the run is reopened in a fresh Python process."""
    exp = labkit.experiment(
        train,
        {"hidden": [4, 16]},
        name="durable",
        metric="val_acc",
        example_inputs=torch.randn(1, 8),
        task="classification",
        store=tmp_path / "experiments",
        widgets=False,
    )
    chosen = exp.trial(2)
    expected = chosen.model(torch.ones(3, 8)).detach()
    code = f"""
import sys, json, torch, labkit
sys.path.insert(0, {str(Path(__file__).parent)!r})
from exp_train_fn import build
from labkit.pipeline import HandoffOptions
exp = labkit.experiment.load("durable", store={str(tmp_path / "experiments")!r})
try:
    exp.handoff(2)
except labkit.LabkitError as e:
    print("REFUSED", e)
exp = labkit.experiment.load("durable", store={str(tmp_path / "experiments")!r}, model_fn=build)
out = exp.model(2)(torch.ones(3, 8)).detach()
torch.save(out, {str(tmp_path / "out.pt")!r})
r = exp.handoff(2, store={str(tmp_path / "bundles")!r}, options=HandoffOptions(benchmark=False))
print("RESULT", r.path)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REFUSED" in proc.stdout and "model_fn=build" in proc.stdout
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected)  # the same trained weights
    path = Path(proc.stdout.split("RESULT ")[1].split()[0])
    verify(path)
    origin = read_manifest(path).provenance.experiment
    assert origin is not None
    assert (origin.name, origin.run, origin.trial) == ("durable", exp.run, 2)
    assert origin.params == {"hidden": 16} and origin.metric == "val_acc" and origin.goal == "max"
    assert origin.metrics["val_acc"] == pytest.approx(chosen.metrics["val_acc"])


def test_saved_weights_are_checked_and_model_fn_is_checked_per_trial(tmp_path: Path) -> None:
    def wrong(hidden: int) -> torch.nn.Module:
        return build(hidden + 1)

    exp = labkit.experiment(
        train,
        {"hidden": [4]},
        name="checked",
        metric="loss",
        model_fn=wrong,
        example_inputs=torch.randn(1, 8),
        store=tmp_path,
        widgets=False,
    )
    assert "model_fn cannot rebuild it" in exp.trials[0].note
    assert "model_fn cannot rebuild it" in table_html(exp)
    weights = exp.path / exp.trials[0].weights
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    again = load("checked", store=tmp_path, model_fn=build)
    with pytest.raises(InputError, match="the file changed since"):
        again.model(1)


def test_a_reopened_notebook_shows_static_outputs(tmp_path: Path) -> None:
    labkit.experiment(
        train,
        [{"hidden": 4}, {"hidden": 8}],
        name="static",
        metric="val_acc",
        example_inputs=torch.randn(1, 8),
        store=tmp_path,
        widgets=False,
    )
    exp = load("static", store=tmp_path)
    outputs = exp.outputs()
    kinds = [sorted(o) for o in outputs]
    assert kinds == [
        ["text/html", "text/plain"],
        [PLOTLY, "text/html", "text/plain"],
        [EXPERIMENT_MIME, "text/html", "text/plain"],
    ]
    assert not any("widget" in k for o in outputs for k in o)  # nothing needs the kernel
    assert "2 of 2 trials, done" in outputs[0]["text/html"]
    assert "labkit.experiment.load(&#x27;static&#x27;" in outputs[2]["text/html"]


def test_random_search_is_seeded_and_optuna_is_told_the_goal(tmp_path: Path) -> None:
    space = {
        "hidden": [4, 8, 16],
        "lr": labkit.experiment.loguniform(1e-3, 1e-1),
        "steps": labkit.experiment.integers(5, 20),
    }
    a = labkit.experiment.random(space, trials=5, seed=3).params
    b = labkit.experiment.random(space, trials=5, seed=3).params
    assert a == b and len(a) == 5
    assert all(p["hidden"] in (4, 8, 16) and 1e-3 <= p["lr"] <= 1e-1 for p in a)
    assert all(isinstance(p["steps"], int) and 5 <= p["steps"] <= 20 for p in a)
    with pytest.raises(InputError, match="low must be below high"):
        labkit.experiment.uniform(1.0, 0.5)
    with pytest.raises(InputError, match="a log scale needs low > 0"):
        labkit.experiment.loguniform(0.0, 1.0)

    seen: list[float] = []

    def quadratic(x: float) -> dict[str, Any]:
        seen.append(x)
        return {"err": (x - 0.3) ** 2}

    exp = labkit.experiment(
        quadratic,
        labkit.experiment.random({"x": labkit.experiment.uniform(-1, 1)}, trials=4, seed=0),
        name="rand",
        metric="err",
        store=tmp_path,
        widgets=False,
    )
    assert len(exp.trials) == 4 and exp.best().metrics["err"] == min(
        t.metrics["err"] for t in exp.trials
    )
    run = json.loads((exp.path / "run.json").read_text())
    assert run["search"]["kind"] == "random" and run["search"]["seed"] == 0

    pytest.importorskip("optuna")
    seen.clear()
    exp = labkit.experiment(
        quadratic,
        labkit.experiment.optuna({"x": labkit.experiment.uniform(-1, 1)}, trials=12, seed=0),
        name="tpe",
        metric="err",
        store=tmp_path,
        widgets=False,
    )
    assert len(exp.trials) == 12 and len(seen) == 12
    # told "min": TPE's later trials close in on x = 0.3 (a maximiser would run away)
    assert exp.best().metrics["err"] < 0.01
    assert json.loads((exp.path / "run.json").read_text())["search"]["kind"] == "optuna"


def test_failed_trials_are_recorded_and_an_interrupt_keeps_the_finished(tmp_path: Path) -> None:
    def flaky(hidden: int) -> dict[str, Any]:
        if hidden == 2:
            raise ValueError("diverged\nmore")
        if hidden == 3:
            raise KeyboardInterrupt
        return {"acc": hidden / 10}

    exp = labkit.experiment(
        flaky, {"hidden": [1, 2, 3, 4]}, name="flaky", metric="acc", store=tmp_path, widgets=False
    )
    assert exp.interrupted and [t.id for t in exp.trials] == [1, 2]
    assert exp.trials[1].status == "failed" and exp.trials[1].error == "ValueError: diverged"
    assert exp.trials[0].latency_ms is None  # no model returned: nothing to time
    reopened = load("flaky", store=tmp_path)
    assert [t.status for t in reopened.trials] == ["ok", "failed"] and reopened.interrupted
    assert "interrupted" in table_html(exp)
    with pytest.raises(InputError, match="trial #1 kept no model"):
        exp.handoff(1)


def test_bad_names_and_results_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not usable as a folder name"):
        labkit.experiment(train, {"hidden": [4]}, name="../up", metric="loss", store=tmp_path)
    exp = labkit.experiment(
        lambda hidden: 0.5,
        {"hidden": [4]},
        name="bad",
        metric="loss",
        store=tmp_path,
        widgets=False,
    )
    assert exp.trials[0].status == "failed"
    assert "return {'model': model" in exp.trials[0].error


@pytest.mark.slow
def test_worker_processes(tmp_path: Path) -> None:
    exp = labkit.experiment(
        train,
        [{"hidden": 4, "steps": 5}, {"hidden": 8, "steps": 5}],
        name="parallel",
        metric="val_acc",
        example_inputs=torch.randn(1, 8),
        store=tmp_path,
        workers=2,
        widgets=False,
    )
    assert [t.id for t in exp.trials] == [1, 2]
    assert all(t.status == "ok" and t.latency_ms and t.weights for t in exp.trials), exp.text()
    assert isinstance(exp.trials[0].model, torch.nn.Module)


def test_hand_off_in_this_session_records_the_trial(tmp_path: Path) -> None:
    exp = labkit.experiment(
        train,
        {"hidden": [4, 16]},
        name="in-session",
        metric="val_acc",
        example_inputs=torch.randn(1, 8),
        task="classification",
        store=tmp_path / "experiments",
        widgets=False,
    )
    result = exp.handoff(store=tmp_path / "bundles", options=HandoffOptions(benchmark=False))
    assert result.name == "in-session" and result.version == "1.0.0"
    assert exp.results[exp.best().id] is result
    assert result.to_dict()["experiment"]["trial"] == exp.best().id
