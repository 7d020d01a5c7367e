"""Issue 16, case 11: the experiment store's names, run ids and JSON.

Each attack is first shown to be real against what the store did before (a ``$``-anchored
name rule, a run joined onto the path as given, ``json.loads`` on whatever is there), then
refused by the store, with nothing written or read outside it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest

import labkit
from labkit.errors import InputError
from labkit.notebook.experiment_store import MAX_JSON_DEPTH, ExperimentStore
from labkit.notebook.experiments import load

OLD_NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _sweep(store: Path, name: str) -> str:
    exp = labkit.experiment(
        lambda x: {"model": None, "val_acc": x},
        [{"x": 0.5}],
        name=name,
        metric="val_acc",
        store=store,
        widgets=False,
    )
    return exp.run


def test_a_name_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    # real: `$` matches before a final newline, so the old rule admitted "abc\n"
    assert OLD_NAME_RULE.match("abc\n")
    (tmp_path / "probe" / "abc\n").mkdir(parents=True)  # and the file system takes it
    for call in (
        lambda: ExperimentStore(tmp_path / "s", "abc\n"),
        lambda: labkit.experiment(
            lambda: {}, [{}], name="abc\n", metric="val_acc", store=tmp_path / "s"
        ),
        lambda: load("abc\n", store=tmp_path / "s"),
    ):
        with pytest.raises(InputError, match="not usable as a folder name"):
            call()
    assert not (tmp_path / "s").exists()


def test_load_cannot_be_walked_out_of_its_experiment(tmp_path: Path) -> None:
    store = tmp_path / "experiments"
    _sweep(store, "mine")
    theirs = _sweep(store, "theirs")
    outside = tmp_path / "outside" / "20260101T000000Z-abcd"
    outside.mkdir(parents=True)
    (outside / "run.json").write_text('{"metric": "val_acc", "goal": "max"}')
    # real: a run joined as given walks to another experiment's run, or out of the store
    escaped = store / "mine" / f"../theirs/{theirs}"
    assert (escaped / "trial-001.json").is_file()
    assert (store / "mine" / "../../outside" / outside.name / "run.json").is_file()
    for run in (f"../theirs/{theirs}", f"../../outside/{outside.name}", "/etc", "x\n"):
        with pytest.raises(InputError, match="is not a run id of this store"):
            load("mine", store=store, run=run)
    for name in ("../theirs", "..", ".", "mine/../theirs"):
        with pytest.raises(InputError, match="not usable as a folder name"):
            load(name, store=store)
    # a run id that is a link out of the store is not one of its runs
    link = store / "mine" / "20270101T000000Z-ffff"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="has no run '20270101T000000Z-ffff'"):
        load("mine", store=store, run=link.name)
    assert load("mine", store=store).run != link.name  # and never the latest either


def test_a_deeply_nested_or_huge_trial_file_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "experiments"
    run = _sweep(store, "nested")
    trial = store / "nested" / run / "trial-001.json"
    bomb = "[" * 200_000 + "]" * 200_000
    with pytest.raises(RecursionError):  # real: the standard parser recurses per level
        json.loads(bomb)
    trial.write_text(bomb)
    with pytest.raises(InputError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        load("nested", store=store)
    trial.write_text('{"id": 1, "a": "' + "x" * (5 << 20) + '"}')
    with pytest.raises(InputError, match="bytes, over the cap of"):
        load("nested", store=store)
    trial.write_text('{"id": 1, "id": 2}')
    with pytest.raises(InputError, match="DuplicateKey"):
        load("nested", store=store)


def test_a_fifo_in_place_of_a_trial_does_not_hang_the_reader(tmp_path: Path) -> None:
    store = tmp_path / "experiments"
    run = _sweep(store, "fifo")
    trial = store / "fifo" / run / "trial-001.json"
    trial.unlink()
    os.mkfifo(trial)
    outcome: list[BaseException | None] = []

    def reader() -> None:
        try:
            load("fifo", store=store)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "load() blocked on a FIFO"
    assert isinstance(outcome[0], InputError) and "not a regular file" in str(outcome[0])
