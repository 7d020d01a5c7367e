"""Issue 16 case 3: a bundle file swapped for a FIFO (or a link) must never block a reader.

The attack: a reader checks a name (``lstat``: a regular file of the listed size), then opens
it by name; in between, the file is renamed over by a FIFO. ``open()`` of a FIFO waits for a
writer that never comes, so ``verify``, ``load``, signature checks and the serve watcher hung
forever. Each test first shows the primitive is real (a plain ``open`` of the swapped file is
still blocked after a second), then runs one labkit reader against a FIFO *in disguise*: the
file is swapped and every by-name check (``os.lstat``, ``os.stat``) is made to see the
regular file it was, as a reader that lost the race would. Only a check on the opened
descriptor (``fstat``) can tell; each reader must return, refusing [link], within seconds.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_attack_tools import leak_bundle

from labkit.bundle import read_manifest, verify
from labkit.bundle.files import read_file
from labkit.bundle.listing import list_bundles
from labkit.errors import BundleError, IntegrityError
from labkit.runtime import load

GOLDEN = "golden/expected.npz"
LIMIT_S = 20.0  # generous on a loaded machine; a blocked open() never returns at all


def _release(path: Path) -> None:
    """Unblock a reader stuck opening the FIFO at ``path`` (a writer appears, then closes)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # nobody is waiting on it
    os.close(fd)


def finishes(fn: Callable[[], Any], fifo: Path, timeout: float = LIMIT_S) -> dict[str, Any]:
    """Run ``fn`` in a thread; fail the test if it is still running after ``timeout``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        _release(fifo)
        t.join(5)
        pytest.fail(f"the reader was still blocked after {timeout}s on the FIFO at {fifo}")
    return box


def swap_for_fifo(path: Path) -> None:
    """Atomically replace ``path`` by a FIFO (what an attacker with write access does)."""
    tmp = path.with_name(path.name + ".fifo")
    os.mkfifo(tmp)
    os.replace(tmp, path)


@pytest.fixture()
def disguise(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """``disguise(path)``: swap ``path`` for a FIFO; by-name checks still see the file."""
    seen: dict[str, os.stat_result] = {}
    real_lstat, real_stat = os.lstat, os.stat

    def lying(real: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
        def check(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            if not kwargs.get("dir_fd") and isinstance(path, (str, os.PathLike)):
                key = os.path.abspath(os.fspath(path))
                if key in seen:
                    return seen[key]
            return real(path, *args, **kwargs)

        return check

    def apply(path: Path) -> None:
        seen[os.path.abspath(path)] = real_lstat(path)
        swap_for_fifo(path)

    monkeypatch.setattr(os, "lstat", lying(real_lstat))
    monkeypatch.setattr(os, "stat", lying(real_stat))
    yield apply
    for key in seen:
        _release(Path(key))


def _refused_as_link(box: dict[str, Any]) -> BundleError:
    err = box.get("error")
    assert isinstance(err, BundleError), box
    assert err.rule == "link" and "FIFO" in str(err), str(err)
    return err


def test_a_plain_open_of_a_swapped_in_fifo_never_returns(tmp_path: Path) -> None:
    target = tmp_path / "expected.npz"
    target.write_bytes(b"x" * 64)
    assert stat.S_ISREG(os.lstat(target).st_mode)  # the check a reader made by name
    swap_for_fifo(target)

    def plain_read() -> bytes:
        with open(target, "rb") as f:
            return f.read()

    box: dict[str, Any] = {}
    t = threading.Thread(target=lambda: box.setdefault("v", plain_read()), daemon=True)
    t.start()
    t.join(1.0)
    assert t.is_alive(), "open() of a FIFO returned: the attack would not block"
    _release(target)
    t.join(5)
    assert box == {"v": b""}


def test_the_one_reader_refuses_a_fifo_a_link_and_a_lie_about_size(tmp_path: Path) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    box = finishes(lambda: read_file(tmp_path, "f", max_bytes=100), fifo)
    _refused_as_link(box)
    (tmp_path / "real").write_bytes(b"abc")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "sub" / "x").write_bytes(b"abc")
    (tmp_path / "dirlink").symlink_to(tmp_path / "sub")
    for rel in ("link", "dirlink/x"):
        with pytest.raises(IntegrityError) as info:
            read_file(tmp_path, rel, max_bytes=100)
        assert info.value.rule == "link", rel
    with pytest.raises(IntegrityError, match="manifest says 4"):
        read_file(tmp_path, "real", max_bytes=100, size=4)
    with pytest.raises(IntegrityError, match="over the cap"):
        read_file(tmp_path, "real", max_bytes=2)
    assert read_file(tmp_path, "sub/x", max_bytes=3, size=3) == b"abc"


@pytest.mark.parametrize("rel", [GOLDEN, "models/fp32.onnx", "manifest.json"])
def test_verify_and_load_refuse_a_fifo_in_disguise(
    tmp_path: Path, disguise: Callable[[Path], None], rel: str
) -> None:
    bundle = leak_bundle(tmp_path)
    disguise(bundle / rel)
    readers = [verify, load] + ([read_manifest] if rel == "manifest.json" else [])
    for reader in readers:
        _refused_as_link(finishes(lambda r=reader: r(bundle), bundle / rel))  # type: ignore[misc]


def test_a_file_only_hashed_is_read_safely_too(
    tmp_path: Path, disguise: Callable[[Path], None]
) -> None:
    bundle = leak_bundle(tmp_path)
    from bundle_attack_tools import reseal

    (bundle / "report.md").write_text("a report, only hashed by verify")
    reseal(bundle)
    disguise(bundle / "report.md")
    _refused_as_link(finishes(lambda: verify(bundle), bundle / "report.md"))


def test_golden_read_after_verification_refuses_a_fifo(
    tmp_path: Path, disguise: Callable[[Path], None]
) -> None:
    bundle = leak_bundle(tmp_path)
    model = load(bundle)
    disguise(bundle / GOLDEN)  # swapped after verification, before the self-test reads it
    _refused_as_link(finishes(model.self_test, bundle / GOLDEN))
    assert np.array_equal(model.golden_inputs()["x"], np.zeros((2, 16), np.uint8))


def test_listing_a_store_reports_the_fifo_and_goes_on(
    tmp_path: Path, disguise: Callable[[Path], None]
) -> None:
    bad = leak_bundle(tmp_path, "bad")
    leak_bundle(tmp_path, "good")
    disguise(bad / "manifest.json")
    box = finishes(lambda: list_bundles(tmp_path), bad / "manifest.json")
    entries = {e.name: e for e in box["value"]}
    assert entries["good"].manifest is not None
    assert entries["bad"].manifest is None and "[link]" in (entries["bad"].problem or "")


def test_signature_readers_refuse_a_fifo_in_disguise(
    tmp_path: Path, disguise: Callable[[Path], None]
) -> None:
    pytest.importorskip("model_signing")
    from signing_helpers import make_keys

    from labkit.runtime.signing import (
        check_signature,
        load_trusted_keys,
        sign_bundle,
        signature_info,
    )

    keys = make_keys(tmp_path / "keys", "alice")
    bundle = leak_bundle(tmp_path / "store")
    sign_bundle(bundle, keys.private)
    vb = verify(bundle)
    sig = bundle / "signature.sig"
    trusted = load_trusted_keys([keys.public])
    disguise(sig)
    _refused_as_link(finishes(lambda: load(bundle, trusted_keys=trusted, profile=None), sig))
    _refused_as_link(finishes(lambda: check_signature(vb, trusted), sig))
    info = finishes(lambda: signature_info(bundle), sig)["value"]
    assert info is not None and info.error and "FIFO" in info.error


def test_the_serve_watcher_refuses_the_version_and_keeps_going(
    tmp_path: Path, disguise: Callable[[Path], None]
) -> None:
    from labkit.serve.repository import ModelRepository

    store = tmp_path / "store"
    leak_bundle(store, "good")
    bad = leak_bundle(store, "bad")
    disguise(bad / GOLDEN)
    repo = ModelRepository(store, tuning=False)
    finishes(repo.refresh, bad / GOLDEN)
    assert repo.served() == [("good", "1.0.0")]
    reason = repo.refused()[("bad", "1.0.0")]
    assert "[link]" in reason and "FIFO" in reason, reason
    # the next scan fingerprints the refused version (to retry it when it changes): the
    # FIFO is counted by its kind, never opened
    finishes(repo.refresh, bad / GOLDEN)
    assert ("bad", "1.0.0") in repo.refused()
