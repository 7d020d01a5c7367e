"""The researcher's model stays theirs: after any labkit call it trains on as before.

Each path — a handoff that succeeds, one that fails midway, ``summary``, an experiment
trial (and handing that trial off), a quick export — is run on a model in the middle of
training: BatchNorm and Dropout in train mode, one frozen parameter, an optimizer with
state. Afterwards the training flags, ``requires_grad``, devices, dtypes and the very
parameter objects are what they were, and the same optimizer takes another step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import labkit
from labkit.errors import ParityError
from labkit.model_state import preserved
from labkit.pipeline import HandoffOptions, run

FAST = HandoffOptions(quantize=False, benchmark=False)


def _training_model() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(16, 3),
    )
    model[0].bias.requires_grad_(False)  # the researcher froze one tensor on purpose
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(32, 8)
    _step(model, opt, x)
    return model, opt, x


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> float:
    model.train()
    opt.zero_grad()
    loss = model(x).logsumexp(dim=1).mean()
    loss.backward()
    opt.step()
    return float(loss.detach())


def _flags(model: torch.nn.Module) -> dict[str, object]:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "ids": {n: id(p) for n, p in model.named_parameters()},
        "dtype": {n: p.dtype for n, p in model.state_dict().items()},
        "device": {n: str(p.device) for n, p in model.state_dict().items()},
    }


def _trains_on(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    """The same optimizer steps the same parameters: the weights move, no error."""
    before = model[4].weight.detach().clone()
    _step(model, opt, x)  # RuntimeError "does not require grad" if a handoff froze them
    assert not torch.equal(before, model[4].weight)


def test_handoff_leaves_the_model_training(tmp_path: Path) -> None:
    model, opt, x = _training_model()
    model.train()
    before = _flags(model)
    stats = model[1].running_mean.clone()
    spec = labkit.register(model, x[:4], name="untouched")
    result = run(spec, store=tmp_path, options=FAST)
    assert result.version == "1.0.0"
    assert _flags(model) == before
    assert model.training and model[1].training and model[3].training
    assert torch.equal(model[1].running_mean, stats)  # eval-mode forwards, no stat updates
    _trains_on(model, opt, x)


def test_handoff_of_a_model_in_eval_mode_keeps_eval(tmp_path: Path) -> None:
    model, _, x = _training_model()
    model.eval()
    model[3].train()  # a mix, as a researcher may leave it
    before = _flags(model)
    run(labkit.register(model, x[:4], name="mixed"), store=tmp_path, options=FAST)
    assert _flags(model) == before


def test_failed_handoff_puts_everything_back(tmp_path: Path, monkeypatch) -> None:
    """Freeze and export ran (eval mode, no grad) and then parity failed."""
    import sys

    run_mod = sys.modules["labkit.pipeline.run"]  # the package's `run` is the function

    model, opt, x = _training_model()
    model.train()
    before = _flags(model)
    real = run_mod.check_parity

    def failing(ref, predictor, tol, **kw):
        report = real(ref, predictor, tol, **kw)
        assert not model.training  # the stages really did run in eval mode
        raise ParityError("forced failure after freeze and export", report)

    monkeypatch.setattr(run_mod, "check_parity", failing)
    spec = labkit.register(model, x[:4], name="fails")
    with pytest.raises(ParityError, match="forced failure"):
        run(spec, store=tmp_path, options=FAST)
    assert _flags(model) == before
    assert not (tmp_path / "fails").exists()  # nothing half-written either
    _trains_on(model, opt, x)


def test_summary_leaves_the_model_training() -> None:
    model, opt, x = _training_model()
    model.train()
    before = _flags(model)
    s = labkit.summary(model, x[:4])
    assert s.parameters == sum(p.numel() for p in model.parameters())
    assert _flags(model) == before
    _trains_on(model, opt, x)


def test_experiment_trial_and_its_handoff_leave_the_model_training(tmp_path: Path) -> None:
    kept: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]] = {}

    def train(hidden: int) -> dict[str, object]:
        model, opt, x = _training_model()
        model.train()
        kept["model"] = (model, opt)
        return {"model": model, "val_acc": 0.5 + hidden / 100, "example_inputs": x[:4]}

    exp = labkit.experiment(
        train,
        {"hidden": [1]},
        name="untouched",
        metric="val_acc",
        store=tmp_path / "exp",
        widgets=False,
    )
    model, opt = kept["model"]
    before = _flags(model)
    assert model.training  # the latency measurement ran in eval mode and put it back
    assert exp.trials[0].latency_ms is not None
    exp.handoff(exp.trials[0], store=tmp_path / "store", options=FAST)
    assert _flags(model) == before
    _trains_on(model, opt, torch.randn(32, 8))


def test_quick_export_leaves_the_model_training() -> None:
    from labkit.notebook.quick_onnx import quick_export

    model, opt, x = _training_model()
    model.train()
    before = _flags(model)
    quick_export(model, (x[:4],), {})
    assert _flags(model) == before
    _trains_on(model, opt, x)


def test_preserved_restores_dtype_device_and_buffers_changed_inside() -> None:
    model, _, _ = _training_model()
    before = _flags(model)
    stats = model[1].running_var.clone()
    with preserved(model):
        model.double().eval()
        model[1].running_var.mul_(3)
        for p in model.parameters():
            p.requires_grad_(False)
    assert _flags(model) == before
    assert torch.equal(model[1].running_var, stats)


def test_preserved_reports_a_forward_that_writes_its_weights() -> None:
    model, _, _ = _training_model()
    with pytest.warns(RuntimeWarning, match=r"changed parameter\(s\) in place.*4\.weight"):
        with preserved(model), torch.no_grad():
            model[4].weight.add_(1)
