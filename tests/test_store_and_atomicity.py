"""Version assignment, and that an interrupted handoff leaves no partial bundle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import labkit
from labkit.bundle import Store
from labkit.bundle.semver import Version
from labkit.bundle.store import classify
from labkit.errors import FormatError, StoreError
from labkit.pipeline import HandoffOptions, run

ROOT = Path(__file__).resolve().parent.parent
FAST = HandoffOptions(quantize=False, benchmark=False)


def _spec(seed: int = 0, hidden: int = 8, task: str = "classification", name: str = "m"):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3)
    )
    return labkit.register(model, torch.randn(2, 4), name=name, task=task)


def test_semver_parse_and_bump() -> None:
    v = Version.parse("1.4.2")
    assert str(v.bump("major")) == "2.0.0"
    assert str(v.bump("minor")) == "1.5.0"
    assert str(v.bump("patch")) == "1.4.3"
    assert sorted([Version.parse("1.10.0"), Version.parse("1.9.0")])[-1] == Version(1, 10, 0)
    for bad in ("1.0", "01.0.0", "1.0.0-rc1", "v1.0.0", 3):
        with pytest.raises(FormatError):
            Version.parse(bad)


def test_classify() -> None:
    from labkit.bundle import Fingerprint

    base = {"architecture": "a", "signature": "s", "weights": "w", "metadata": "m"}

    def fp(**kw: str) -> Fingerprint:
        return Fingerprint(**{**base, **kw})

    assert classify(fp(), fp()) == "none"
    assert classify(fp(), fp(metadata="m2")) == "patch"
    assert classify(fp(), fp(weights="w2", metadata="m2")) == "minor"
    assert classify(fp(), fp(architecture="a2", weights="w2")) == "major"
    assert classify(fp(), fp(signature="s2")) == "major"


def test_versions_first_minor_major_patch_none(tmp_path: Path) -> None:
    store = Store(tmp_path)
    r1 = run(_spec(0), store=tmp_path, options=FAST)
    assert (r1.version, r1.change) == ("1.0.0", "first")
    r2 = run(_spec(1), store=tmp_path, options=FAST)
    assert (r2.version, r2.change) == ("1.1.0", "minor")
    assert "drop-in compatible" in r2.change_reason
    r3 = run(_spec(1, task="other"), store=tmp_path, options=FAST)
    assert (r3.version, r3.change) == ("1.1.1", "patch")
    r4 = run(_spec(1, hidden=16, task="other"), store=tmp_path, options=FAST)
    assert (r4.version, r4.change) == ("2.0.0", "major")
    r5 = run(_spec(1, hidden=16, task="other"), store=tmp_path, options=FAST)
    assert (r5.version, r5.change) == ("2.0.0", "none")
    assert store.versions("m") == ["1.0.0", "1.1.0", "1.1.1", "2.0.0"]
    assert store.latest("m") == "2.0.0"
    assert store.manifest("m", "1.1.0").change.to_dict() == {
        "kind": "minor",
        "from": "1.0.0",
        "reason": r2.change_reason,
    }


def test_existing_version_is_never_overwritten(tmp_path: Path) -> None:
    from labkit.bundle import write_bundle

    r = run(_spec(0), store=tmp_path, options=FAST)
    before = sorted(p.read_bytes() for p in r.path.rglob("*") if p.is_file())
    with pytest.raises(StoreError, match="never overwritten"):
        write_bundle(tmp_path, "m", "1.0.0", {"report.md": b"x"}, {})
    assert sorted(p.read_bytes() for p in r.path.rglob("*") if p.is_file()) == before


def test_error_while_writing_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import labkit.bundle.writer as writer

    calls = {"n": 0}
    real = writer.write_file

    def failing(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(writer, "write_file", failing)
    with pytest.raises(OSError, match="No space"):
        run(_spec(0), store=tmp_path, options=FAST)
    assert not (tmp_path / "m").exists()
    assert list((tmp_path / ".staging").iterdir()) == []
    assert Store(tmp_path).names() == []


def test_ctrl_c_during_handoff_leaves_nothing(tmp_path: Path) -> None:
    def interrupt(event) -> None:
        if event.stage == "bundle" and event.status == "start":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(_spec(0), store=tmp_path, options=FAST, progress=interrupt)
    assert Store(tmp_path).names() == []


def test_sigint_to_cli_leaves_nothing(tmp_path: Path) -> None:
    """A real Ctrl-C (SIGINT) to `handoff export` while it runs: exit 130, no bundle."""
    script = tmp_path / "slow.py"
    script.write_text(
        textwrap.dedent("""
        import time, torch, labkit
        def build():
            torch.manual_seed(0)
            m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
            return labkit.register(m, torch.randn(2, 4), name="slow")
    """)
    )
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-m", "handoff", "export", f"{script}:build", "--store", str(store)],
        stderr=subprocess.PIPE,
        text=True,
        stdout=subprocess.PIPE,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until the benchmark stage runs
        if "benchmark" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; nothing was written" in err
    assert Store(store).names() == []


def test_kill_while_renaming_leaves_no_bundle_and_staging_is_cleaned(tmp_path: Path) -> None:
    """SIGKILL between the staged write and the rename: no bundle; next write cleans up."""
    store = tmp_path / "store"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        import labkit.bundle.writer as writer
        writer.os.rename = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        from tests.test_store_and_atomicity import _spec, FAST
        from labkit.pipeline import run
        run(_spec(0), store={str(store)!r}, options=FAST)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert Store(store).names() == []
    leftovers = list((store / ".staging").iterdir())
    assert len(leftovers) == 1
    r = run(_spec(0), store=store, options=FAST)
    assert r.version == "1.0.0"
    assert list((store / ".staging").iterdir()) == []


def test_store_ignores_non_bundles(tmp_path: Path) -> None:
    run(_spec(0), store=tmp_path, options=FAST)
    (tmp_path / "m" / "not-a-version").mkdir()
    (tmp_path / "Bad Name").mkdir()
    store = Store(tmp_path)
    assert store.names() == ["m"]
    assert store.versions("m") == ["1.0.0"]
    with pytest.raises(StoreError, match="it has: 1.0.0"):
        store.path("m", "9.9.9")


def test_default_store_from_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LABKIT_STORE", str(tmp_path / "env-store"))
    r = run(_spec(0), options=FAST)
    assert r.path == tmp_path / "env-store" / "m" / "1.0.0"
    assert os.path.isdir(r.path)
