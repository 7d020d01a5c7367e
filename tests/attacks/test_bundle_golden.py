"""[golden]: golden .npz files are read only within the bounds the manifest sets.

Every case is refused by verify's integrity pass itself (not only by the self-test later),
as one line naming [golden]; the zip bomb is measured in a subprocess (time and peak RSS).
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_attack_tools import leak_bundle, npz, put

import labkit.runtime.model as runtime_model
from handoff.cli import main
from labkit.bundle import verify
from labkit.bundle.npz import MAX_GOLDEN_BYTES
from labkit.errors import BundleError

INPUTS = "golden/inputs.npz"
EXPECTED = "golden/expected.npz"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def no_session(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    made: list[bytes] = []

    def forbidden(model: bytes, *_: Any, **__: Any) -> None:
        made.append(model)
        raise AssertionError("an ONNX Runtime session was created for a refused bundle")

    monkeypatch.setattr(runtime_model, "make_session", forbidden)
    return made


def refused(bundle: Path, no_session: list[bytes], capsys: pytest.CaptureFixture[str]) -> str:
    from labkit.runtime import load

    with pytest.raises(BundleError) as info:
        verify(bundle)
    assert info.value.rule == "golden", str(info.value)
    with pytest.raises(BundleError) as again:
        load(bundle)
    assert again.value.rule == "golden"
    assert no_session == []
    assert main(["verify", str(bundle)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[golden]" in err and "Traceback" not in err, err
    return str(info.value)


X = np.zeros((2, 16), np.uint8)


def test_pristine_golden_files_read_back(tmp_path: Path) -> None:
    vb = verify(leak_bundle(tmp_path / "store"))
    got = vb.read_npz(INPUTS)
    assert list(got) == ["x"] and got["x"].dtype == np.uint8 and got["x"].shape == (2, 16)
    assert got["x"].flags.writeable
    assert vb.read_npz(EXPECTED)["y"].tolist() == [list(range(16))] * 2


def test_wrong_dtype(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    put(bundle, INPUTS, npz(x=X.astype(np.float32)))
    assert "'<f4'" in refused(bundle, no_session, capsys)


def test_wrong_fixed_dim(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    put(bundle, INPUTS, npz(x=np.zeros((2, 8), np.uint8)))
    assert "shape [2, 8]" in refused(bundle, no_session, capsys)


def test_rows_disagree_between_inputs_and_expected(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    put(bundle, EXPECTED, npz(y=np.zeros((3, 16), np.uint8)))
    assert "'batch' = 2" in refused(bundle, no_session, capsys)


def test_rows_disagree_with_golden_rows(tmp_path, no_session, capsys):
    from bundle_attack_tools import reseal

    bundle = leak_bundle(tmp_path / "store")
    reseal(bundle, lambda m: m["golden"].__setitem__("rows", 3))
    assert "golden.rows says 3 rows" in refused(bundle, no_session, capsys)


def test_extra_member(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    put(bundle, INPUTS, npz(x=X, other=X))
    assert "unexpected ['other.npy']" in refused(bundle, no_session, capsys)


def test_missing_member_is_a_rule_not_a_key_error(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    put(bundle, EXPECTED, npz(z=X))
    assert "missing ['y.npy']" in refused(bundle, no_session, capsys)


def test_object_dtype(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    buf = io.BytesIO()
    np.savez(buf, x=np.array([[{"a": 1}] * 16] * 2, dtype=object))
    put(bundle, INPUTS, buf.getvalue())
    assert "'|O'" in refused(bundle, no_session, capsys)


class _Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(MARKER[0]),))


MARKER: list[str] = []


def test_pickle_member_is_never_unpickled(tmp_path, no_session, capsys):
    """A member that is a pickle (code runs on load) is refused from its header alone."""
    marker = tmp_path / "pwned"
    MARKER[:] = [str(marker)]
    payload = pickle.dumps(_Payload())
    pickle.loads(payload)  # the payload is real: unpickling runs code
    assert marker.exists()
    marker.unlink()
    bundle = leak_bundle(tmp_path / "store")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", payload)
    put(bundle, INPUTS, buf.getvalue())
    assert "no valid .npy header" in refused(bundle, no_session, capsys)
    assert not marker.exists()


def test_member_longer_than_its_header_declares(tmp_path, no_session, capsys):
    bundle = leak_bundle(tmp_path / "store")
    member = io.BytesIO()
    np.save(member, X)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", member.getvalue() + b"\0" * 64)
    put(bundle, INPUTS, buf.getvalue())
    assert "unpacks to" in refused(bundle, no_session, capsys)


# --- zip bombs: ~2 MiB on disk, 2 GiB inflated -------------------------------------------

_GiB = 1 << 30


def _npy_header(shape: tuple[int, ...]) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    return out.getvalue()


def _bomb_zip(header: bytes, zeros: int) -> bytes:
    """A one-member zip ``x.npy`` = header + ``zeros`` zero bytes, deflated to ~1/1000.

    Built from one repeated full-flush deflate block, so making it costs no inflation."""
    chunk = 1 << 20
    assert zeros % chunk == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    assert block == again  # a full flush resets the history: every block is the same
    body = head + block * (zeros // chunk) + c.flush()
    crc = zlib.crc32(header)
    zero = bytes(chunk)
    for _ in range(zeros // chunk):
        crc = zlib.crc32(zero, crc)
    size = len(header) + zeros
    name = b"x.npy"
    local = (
        struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(body), size, len(name), 0
        )
        + name
    )
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            8,
            0,
            0x21,
            crc,
            len(body),
            size,
            len(name),
            0,
            0,
            0,
            0,
            0,
            0,
        )
        + name
    )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(body), 0)
    return local + body + central + end


_PROBE = """
import json, sys, time
from pathlib import Path
from labkit.bundle import verify
from labkit.bundle.npz import read_npz
from labkit.bundle.tensors import TensorSpec
from labkit.errors import BundleError
bundle = Path(sys.argv[1])
out = {}
start = time.perf_counter()
try:
    verify(bundle)
    out["verify"] = "accepted"
except BundleError as exc:
    out["verify"] = str(exc)
try:
    read_npz((bundle / "golden/inputs.npz").read_bytes(), "golden/inputs.npz",
             [TensorSpec("x", "uint8", ("batch", 16))])
    out["read"] = "accepted"
except BundleError as exc:
    out["read"] = str(exc)
out["seconds"] = time.perf_counter() - start
# VmHWM, not ru_maxrss: the latter keeps the parent's high-water mark across fork+exec.
hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
out["peak_rss_mb"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "declared", [(2, 16), (2 * _GiB // 16, 16)], ids=["small-header", "header-matching-the-bomb"]
)
def test_zip_bomb_is_refused_fast_and_small(tmp_path, declared):
    """2 GiB of zeros in a ~2 MiB member: refused in < 5 s with < 300 MB peak RSS, whether
    the header declares 32 bytes (the zip entry says 2 GiB) or the full 2 GiB (over the cap;
    np.load would allocate and inflate all of it)."""
    bomb = _bomb_zip(_npy_header(declared), 2 * _GiB)
    assert len(bomb) < 3 << 20
    with zipfile.ZipFile(io.BytesIO(bomb)) as zf:
        assert zf.getinfo("x.npy").file_size > 2 * _GiB  # a real bomb, as zipfile sees it
        with zf.open("x.npy") as member:
            assert np.lib.format.read_magic(member) == (1, 0)
            assert np.lib.format.read_array_header_1_0(member)[0] == declared
    bundle = leak_bundle(tmp_path / "store")
    put(bundle, INPUTS, bomb)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("verify", "read"):
        assert result[key].startswith("[golden]"), result
    if declared == (2, 16):
        assert "unpacks to" in result["verify"]
    else:
        assert f"over the cap of {MAX_GOLDEN_BYTES}" in result["verify"]
    assert result["seconds"] < 5, result
    assert result["peak_rss_mb"] < 300, result
    print(f"zip bomb {declared}: {result['seconds']:.3f} s, {result['peak_rss_mb']:.0f} MB")


def test_golden_swapped_after_load_is_caught(tmp_path: Path) -> None:
    """Golden files are re-hashed as read: a bomb swapped in after verification is refused
    before any of it is parsed."""
    from labkit.runtime import load

    bundle = leak_bundle(tmp_path / "store")
    model = load(bundle)
    assert model.golden_inputs()["x"].shape == (2, 16)
    (bundle / INPUTS).write_bytes(_bomb_zip(_npy_header((2, 16)), 64 << 20))
    with pytest.raises(BundleError) as info:
        model.golden_inputs()
    assert info.value.rule == "digest"
