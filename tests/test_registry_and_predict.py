"""Registration errors name the argument and the fix; predict() validates its inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import labkit
from labkit.errors import InputError, RegistrationError
from labkit.runtime import load


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(model="not a model", example_inputs=torch.randn(1, 4), name="a"),
            "model must be a torch.nn.Module",
        ),
        (dict(model=_mlp(), example_inputs=[[1.0, 2.0]], name="a"), r"example_inputs\[0\]"),
        (dict(model=_mlp(), example_inputs="x", name="a"), "example_inputs must be a tensor"),
        (dict(model=_mlp(), example_inputs=(), name="a"), "example_inputs has no tensors"),
        (
            dict(model=_mlp(), example_inputs=torch.randn(1, 7), name="a"),
            r"Sequential.forward raised on example_inputs \(input_0: float32\[1, 7\]\)",
        ),
        (dict(model=_mlp(), example_inputs=torch.randn(1, 4), name="../etc"), "not a safe bundle"),
        (dict(model=_mlp(), example_inputs=torch.randn(1, 4), name="My Model"), "not a safe"),
        (dict(model=_mlp(), example_inputs=torch.randn(1, 4), name=""), "not a safe bundle"),
        (
            dict(model=_mlp(), example_inputs=torch.randn(1, 4), name="a", task="segmentation"),
            "task=",
        ),
        (dict(model=_mlp(), example_inputs=torch.randn(1, 4), name="a", tolerance=5), "tolerance="),
        (
            dict(
                model=_mlp(),
                example_inputs=torch.randn(1, 4),
                name="a",
                dynamic_axes={"nope": {1: "x"}},
            ),
            "dynamic_axes names 'nope'",
        ),
        (
            dict(
                model=_mlp(),
                example_inputs=torch.randn(1, 4),
                name="a",
                parity_inputs=[(torch.randn(2, 4), torch.randn(2, 4))],
            ),
            r"parity_inputs\[0\] has 2",
        ),
    ],
)
def test_bad_registration(kwargs, match) -> None:
    with pytest.raises(RegistrationError, match=match):
        labkit.register(**kwargs)


def test_non_tensor_output_is_refused() -> None:
    class Dicty(torch.nn.Module):
        def forward(self, x):
            return {"y": x, "steps": 3}

    with pytest.raises(RegistrationError, match="returned dict whose 'steps' is of type int"):
        labkit.register(Dicty(), torch.randn(1, 4), name="d")


def test_register_names_io_and_is_listed() -> None:
    class Two(torch.nn.Module):
        def forward(self, a, b):
            return a + b, a * b

    spec = labkit.register(Two(), (torch.randn(2, 3), torch.randn(2, 3)), name="two")
    assert spec.input_names == ("input_0", "input_1")
    assert spec.output_names == ("output_0", "output_1")
    assert labkit.registered()["two"] is spec
    assert spec.describe() == {
        "name": "two",
        "task": None,
        "model": "Two",
        "parameters": 0,
        "inputs": [
            {"name": "input_0", "shape": [2, 3], "dtype": "torch.float32"},
            {"name": "input_1", "shape": [2, 3], "dtype": "torch.float32"},
        ],
    }


def test_nondeterministic_model_fails_the_handoff(tmp_path: Path) -> None:
    from labkit.pipeline import HandoffOptions, run

    class Noisy(torch.nn.Module):
        def forward(self, x):
            return x + torch.rand_like(x)

    spec = labkit.register(Noisy(), torch.randn(2, 4), name="noisy")
    with pytest.raises(RegistrationError, match="not deterministic"):
        run(spec, store=tmp_path, options=HandoffOptions(quantize=False, benchmark=False))
    assert not (tmp_path / "noisy").exists()


def test_predict_positional_dict_and_kwargs_agree(bundle: Path) -> None:
    m = load(bundle)
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    a = m.predict(x)["output"]
    b = m.predict({"input_0": x})["output"]
    c = m.predict(input_0=x)["output"]
    assert a.shape == (3, 5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m, x: m.predict(x.astype(np.float64)), "dtype float64.*x.astype"),
        (lambda m, x: m.predict(x[:, :8]), "size 8 on axis 1, the model expects 16"),
        (lambda m, x: m.predict(x[None]), "rank 3"),
        (lambda m, x: m.predict(x[:0]), "at least 1"),
        (lambda m, x: m.predict({"wrong": x}), r"unknown input\(s\) \['wrong'\]"),
        (lambda m, x: m.predict(x, x), "takes 1 input"),
        (lambda m, x: m.predict(), "takes 1 input"),
        (lambda m, x: m.predict(x.tolist()), "must be a numpy array"),
        (lambda m, x: m.predict(x, input_0=x), "not both"),
    ],
)
def test_predict_rejects_bad_inputs_clearly(bundle: Path, call, match) -> None:
    m = load(bundle)
    x = np.zeros((2, 16), np.float32)
    with pytest.raises(InputError, match=match):
        call(m, x)


def test_variants_load_and_self_test(bundle: Path) -> None:
    from labkit.errors import FormatError

    m = load(bundle)
    assert m.variant == m.manifest.default_variant
    for v in m.manifest.variants:
        report = load(bundle, variant=v.name).self_test()
        assert report.ok, report.failures
    with pytest.raises(FormatError, match="no variant 'fp64'"):
        load(bundle, variant="fp64")


def test_self_test_detects_wrong_numbers(bundle: Path, monkeypatch) -> None:
    m = load(bundle, variant="fp32")
    session = m._sessions.get()  # the one session of an untuned model
    m._sessions.put(session)
    real = session.run
    monkeypatch.setattr(
        session, "run", lambda names, feed: [o * 1.01 for o in real(names, feed)], raising=False
    )
    report = m.self_test()
    assert not report.ok
    assert "variant fp32" in report.failures[0]
