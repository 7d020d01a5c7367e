"""handoff serve and tuning: --tune tunes before serving, profiles are used, --no-tuning not."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")

from labkit.runtime import profile  # noqa: E402
from labkit.serve.cli import config_from_args  # noqa: E402
from labkit.serve.repository import ModelRepository  # noqa: E402


@pytest.fixture()
def store(tiny_store: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny_store / "tiny", tmp_path / "tiny")
    return tmp_path


def test_serve_tune_writes_a_profile_then_serves_with_it(store: Path) -> None:
    repo = ModelRepository(store, tune_budget_s=6)
    events = repo.refresh()
    assert [(n, v, ok) for n, v, ok, _ in events] == [("tiny", "1.0.0", True)]
    model = repo.get("tiny").model
    expected = profile.profile_path(store / "tiny" / "1.0.0", model.manifest)
    assert expected.is_file() and model.tuning["profile"] == str(expected)
    doc = profile.read(expected)
    assert doc["objective"] == "throughput"
    assert model.candidate.to_dict() == doc["chosen"]["candidate"]
    x = np.zeros((3, 16), np.float32)
    assert model.predict(x)["output"].shape == (3, 5)

    # A second server start finds the profile and does not tune again.
    stamp = expected.stat().st_mtime_ns
    again = ModelRepository(store, tune_budget_s=6)
    again.refresh()
    assert expected.stat().st_mtime_ns == stamp
    assert again.get("tiny").model.tuning["profile"] == str(expected)

    off = ModelRepository(store, tuning=False)
    off.refresh()
    assert off.get("tiny").model.tuning == {"profile": None, "note": None}


def test_serve_flags_reach_the_config() -> None:
    from handoff.cli import build_parser

    args = build_parser().parse_args(["serve", ".", "--tune", "--tune-budget-s", "30"])
    config = config_from_args(args)
    assert config.tuning and config.tune_budget_s == 30
    args = build_parser().parse_args(["serve", ".", "--no-tuning"])
    config = config_from_args(args)
    assert not config.tuning and config.tune_budget_s is None
