"""Aliases beside immutable versions: promote, rollback, history, concurrent promoters, and
records that are refused when they are not what the format says."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bundle_factory import small_manifest

from labkit.bundle import Store, write_bundle
from labkit.bundle import aliases as al
from labkit.errors import StoreError

ROOT = Path(__file__).resolve().parent.parent


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def make_store(root: Path, *versions: str, failing: tuple[str, ...] = ()) -> Store:
    """Versions of the Identity bundle; those in ``failing`` keep every digest right but
    golden outputs the model does not reproduce (integrity passes, the self-test fails)."""
    for v in versions:
        manifest, files = small_manifest("mlp")
        if v in failing:
            files["golden/expected.npz"] = _npz(y=np.arange(6, dtype=np.float32).reshape(3, 2) + 1)
        write_bundle(root, "mlp", v, files, manifest)
    return Store(root)


def handoff(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handoff", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_promote_rollback_walk_the_history_like_undo(tmp_path: Path) -> None:
    store = make_store(tmp_path, "1.0.0", "1.1.0", "1.2.0")
    files = store.files
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        al.promote(files, "mlp", "prod", v, by="alice@ci")
    before, again = al.promote(files, "mlp", "prod", "1.2.0")
    assert again is None and before is not None and before.generation == 3  # no new record
    prod = store.alias("mlp", "prod")
    assert prod is not None and (prod.version, prod.rollback_target()) == ("1.2.0", "1.1.0")

    current, target = al.plan_rollback(files, "mlp", "prod")
    al.move(files, "mlp", "prod", target, action="rollback", expect=current, by="bob")
    current, target = al.plan_rollback(files, "mlp", "prod")
    assert (current.version, target) == ("1.1.0", "1.0.0")  # a second rollback goes further
    al.move(files, "mlp", "prod", target, action="rollback", expect=current)
    with pytest.raises(StoreError, match="no earlier target"):
        al.plan_rollback(files, "mlp", "prod")
    prod = store.alias("mlp", "prod")
    assert prod is not None
    assert [(e.generation, e.previous, e.version, e.action) for e in prod.history] == [
        (1, None, "1.0.0", "promote"),
        (2, "1.0.0", "1.1.0", "promote"),
        (3, "1.1.0", "1.2.0", "promote"),
        (4, "1.2.0", "1.1.0", "rollback"),
        (5, "1.1.0", "1.0.0", "rollback"),
    ]
    assert prod.history[0].by == "alice@ci" and prod.history[3].by == "bob"
    assert prod.targets() == ["1.0.0", "1.1.0", "1.2.0"]
    # a promotion after rollbacks pushes again: rollback returns to where it came from
    al.promote(files, "mlp", "prod", "1.2.0")
    assert store.alias("mlp", "prod").rollback_target() == "1.0.0"  # type: ignore[union-attr]
    # records are plain, world-readable files beside the versions; versions are untouched
    rec = tmp_path / "mlp" / ".aliases" / "prod" / "000000000001.json"
    assert oct(rec.stat().st_mode & 0o777) == "0o644"
    assert json.loads(rec.read_text())["version"] == "1.0.0"
    assert store.versions("mlp") == ["1.0.0", "1.1.0", "1.2.0"] and store.names() == ["mlp"]


def test_a_stale_writer_is_refused_not_merged(tmp_path: Path) -> None:
    store = make_store(tmp_path, "1.0.0", "1.1.0")
    al.promote(store.files, "mlp", "prod", "1.0.0")
    seen = store.alias("mlp", "prod")
    al.promote(store.files, "mlp", "prod", "1.1.0")  # someone else, in between
    with pytest.raises(al.AliasConflict, match="moved by someone else"):
        al.move(store.files, "mlp", "prod", "1.0.0", action="rollback", expect=seen)
    assert store.alias("mlp", "prod").version == "1.1.0"  # type: ignore[union-attr]


_PROMOTER = """
import os, sys, time
from labkit.bundle import Store
from labkit.bundle import aliases as al
store = Store(sys.argv[1])
while not os.path.exists(sys.argv[1] + "/go"):  # start together
    time.sleep(0.001)
moves = 0
for i in range(int(sys.argv[2])):
    _, event = al.promote(store.files, "mlp", "prod", ("1.0.0", "1.1.0")[i % 2], by=sys.argv[3])
    moves += event is not None
print(moves)
"""


def test_two_promoters_at_once_never_fork_or_lose_a_move(tmp_path: Path) -> None:
    store = make_store(tmp_path, "1.0.0", "1.1.0")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROMOTER, str(tmp_path), "150", who],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for who in ("a", "b")
    ]
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    prod = store.alias("mlp", "prod")
    assert prod is not None
    # every move a promoter was told it made is in the history, once
    assert sum(int(out) for out in outs) == len(prod.history)
    gens = [e.generation for e in prod.history]
    assert gens == list(range(1, len(gens) + 1))  # contiguous: nothing overwritten
    # each move records the state it replaced: the chain is unbroken
    for older, newer in zip(prod.history, prod.history[1:]):
        assert newer.previous == older.version and newer.version != older.version
    assert {e.by for e in prod.history} == {"a", "b"}
    assert not [p for p in (tmp_path / "mlp" / ".aliases" / "prod").iterdir() if "tmp" in p.name]


@pytest.mark.parametrize(
    "alias", ["Prod", "1.0.0", "latest", "", "a/b", "../x", "x" * 40, "-p", "p\n"]
)
def test_alias_names_are_checked(tmp_path: Path, alias: str) -> None:
    store = make_store(tmp_path, "1.0.0")
    with pytest.raises(StoreError, match="not allowed"):
        al.promote(store.files, "mlp", alias, "1.0.0")
    assert not (tmp_path / "mlp" / ".aliases").exists()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: {**d, "version": "../1.0.0"}, "MAJOR.MINOR.PATCH"),
        (lambda d: {**d, "generation": 2}, "must stay where it was written"),
        (lambda d: {**d, "model": "other"}, "must stay where it was written"),
        (lambda d: {**d, "extra": 1}, "unknown"),
        (lambda d: {k: v for k, v in d.items() if k != "at"}, "missing"),
        (lambda d: {**d, "action": "delete"}, "action"),
        (lambda d: {**d, "alias_format": 2}, "alias_format"),
    ],
)
def test_a_record_that_is_not_the_format_is_refused(tmp_path: Path, change, why: str) -> None:
    store = make_store(tmp_path, "1.0.0")
    al.promote(store.files, "mlp", "prod", "1.0.0")
    rec = tmp_path / "mlp" / ".aliases" / "prod" / "000000000001.json"
    rec.write_text(json.dumps(change(json.loads(rec.read_text()))))
    with pytest.raises(StoreError, match=why):
        store.alias("mlp", "prod")


def test_duplicate_keys_oversized_and_missing_records_are_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path, "1.0.0", "1.1.0")
    for v in ("1.0.0", "1.1.0", "1.0.0"):
        al.promote(store.files, "mlp", "prod", v)
    folder = tmp_path / "mlp" / ".aliases" / "prod"
    first = folder / "000000000001.json"
    text = first.read_text()
    first.write_text(text.replace('"version"', '"version": "1.1.0", "version"'))
    with pytest.raises(StoreError, match="duplicate key"):
        store.alias("mlp", "prod")
    first.write_text(text + " " * al.MAX_RECORD_BYTES)
    with pytest.raises(StoreError, match="over"):
        store.alias("mlp", "prod")
    first.write_text(text)
    (folder / "000000000002.json").unlink()
    with pytest.raises(StoreError, match="missing"):
        store.alias("mlp", "prod")


def test_cli_promote_refuses_a_version_that_does_not_verify(tmp_path: Path) -> None:
    make_store(tmp_path, "1.0.0", "1.1.0", failing=("1.1.0",))
    ok = handoff("promote", str(tmp_path / "mlp" / "1.0.0"), "--note", "first")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("mlp: prod → 1.0.0, generation 1")
    bad = handoff("promote", str(tmp_path / "mlp" / "1.1.0"))
    assert bad.returncode == 1
    assert "refusing to promote mlp 1.1.0: it does not verify on this host" in bad.stderr
    assert Store(tmp_path).alias("mlp", "prod").version == "1.0.0"  # type: ignore[union-attr]
    # a tampered byte is refused the same way (integrity, before any session)
    onnx = tmp_path / "mlp" / "1.0.0" / "models" / "fp32.onnx"
    onnx.chmod(0o644)
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    tampered = handoff("promote", str(tmp_path / "mlp" / "1.0.0"), "--alias", "staging")
    assert tampered.returncode == 1 and "[digest]" in tampered.stderr
    assert Store(tmp_path).alias("mlp", "staging") is None


def test_cli_rollback_list_and_inspect_show_aliases(tmp_path: Path) -> None:
    make_store(tmp_path, "1.0.0", "1.1.0")
    for v in ("1.0.0", "1.1.0"):
        assert handoff("promote", str(tmp_path / "mlp" / v)).returncode == 0
    back = handoff("rollback", str(tmp_path / "mlp"), "--note", "p99 regression", "--json")
    assert back.returncode == 0, back.stderr
    doc = json.loads(back.stdout)["alias"]
    assert (doc["version"], doc["generation"], doc["history"][-1]["action"]) == (
        "1.0.0",
        3,
        "rollback",
    )
    assert doc["history"][-1]["note"] == "p99 regression"
    listed = json.loads(handoff("list", str(tmp_path), "--json").stdout)
    assert [sorted(r["aliases"]) for r in listed] == [["prod"], []]
    assert listed[0]["aliases"]["prod"]["history"][1]["from"] == "1.0.0"
    text = handoff("list", str(tmp_path)).stdout
    assert "alias prod → 1.0.0 (generation 3)" in text
    assert "rollback 1.1.0 → 1.0.0 by " in text and ": p99 regression" in text
    inspect = handoff("inspect", str(tmp_path / "mlp" / "1.1.0")).stdout
    assert "alias prod → 1.0.0" in inspect and "promote  1.0.0 → 1.1.0" in inspect
    none_left = handoff("rollback", str(tmp_path / "mlp"))
    assert none_left.returncode == 1 and "no earlier target" in none_left.stderr


def test_record_text_cannot_drive_the_terminal(tmp_path: Path) -> None:
    store = make_store(tmp_path, "1.0.0")
    al.promote(store.files, "mlp", "prod", "1.0.0", by="x\x1b[2J", note="ok\nself-test OK")
    text = handoff("list", str(tmp_path)).stdout
    assert "\x1b" not in text and "\\x1b[2J" in text and "ok\\nself-test OK" in text
