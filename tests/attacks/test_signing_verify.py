"""Signed bundles: the right key passes; wrong key, unsigned, any changed byte, a replaced or
garbled signature are refused with one line naming the rule, before any ONNX Runtime
session exists. Without trusted keys nothing changes."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from signing_helpers import KeyPair, built_store, copy_bundle, handoff, make_keys, one_error_line

import labkit.runtime as rt
import labkit.runtime.model as model_mod
from labkit.bundle import verify
from labkit.bundle._json import dumps_canonical
from labkit.bundle.manifest import DIGEST_FIELD, self_digest
from labkit.errors import BundleError, LabkitError
from labkit.runtime.signing import SIGNATURE_NAME, sign_bundle

pytest.importorskip("model_signing")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_store(tmp_path_factory)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    folder = tmp_path_factory.mktemp("keys")
    return {n: make_keys(folder, n) for n in ("alice", "mallory")}


@pytest.fixture()
def signed(store: Path, keys: dict[str, KeyPair], tmp_path: Path) -> Path:
    bundle = copy_bundle(store, "1.0.0", tmp_path / "s")
    sign_bundle(bundle, keys["alice"].private)
    return bundle


@pytest.fixture()
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts ONNX Runtime sessions made by load() (the real function still makes them)."""
    made: list[int] = []
    real: Callable[..., Any] = model_mod.make_session

    def counting(*args: Any, **kw: Any) -> Any:
        made.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(model_mod, "make_session", counting)
    return made


def _refused(bundle: Path, keys: list[Path], sessions: list[int]) -> BundleError:
    with pytest.raises(BundleError) as err:
        rt.load(bundle, trusted_keys=keys)
    assert sessions == [], "a session was created before the refusal"
    assert "\n" not in str(err.value) and str(err.value).startswith(f"[{err.value.rule}] ")
    return err.value


def _fingerprint(pub: Path) -> str:
    return hashlib.sha256(pub.read_bytes()).hexdigest()


def test_right_key_passes(signed: Path, keys: dict[str, KeyPair], sessions: list[int]) -> None:
    model = rt.load(signed, trusted_keys=[keys["mallory"].public, keys["alice"].public])
    assert sessions == [1]
    x = np.load(signed / "golden" / "inputs.npz")["input_0"]
    expected = np.load(signed / "golden" / "expected.npz")["output"]
    np.testing.assert_allclose(model.predict(x)["output"], expected, rtol=1e-4, atol=1e-5)
    proc = handoff("verify", str(signed), "--trusted-key", str(keys["alice"].public))
    assert proc.returncode == 0, proc.stderr
    assert f"signed by trusted key sha256:{_fingerprint(keys['alice'].public)[:16]}" in proc.stdout
    as_json = handoff("verify", str(signed), "--json", "--trusted-key", str(keys["alice"].public))
    assert json.loads(as_json.stdout)["signed_by"] == _fingerprint(keys["alice"].public)


def test_upstream_model_signing_accepts_the_signature(
    signed: Path, keys: dict[str, KeyPair]
) -> None:
    import model_signing.verifying

    model_signing.verifying.Config().use_elliptic_key_verifier(
        public_key=keys["alice"].public
    ).verify(signed, signed / SIGNATURE_NAME)
    (signed / "report.md").write_text("changed")
    with pytest.raises(ValueError, match="report.md"):
        model_signing.verifying.Config().use_elliptic_key_verifier(
            public_key=keys["alice"].public
        ).verify(signed, signed / SIGNATURE_NAME)


def test_signing_changes_nothing_else(
    store: Path, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    bundle = copy_bundle(store, "1.0.0", tmp_path / "s")
    before = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    fingerprint = sign_bundle(bundle, keys["alice"].private)
    after = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert fingerprint == _fingerprint(keys["alice"].public)
    assert set(after) - set(before) == {Path(SIGNATURE_NAME)}
    assert all(after[k] == v for k, v in before.items())  # manifest (and its digest) included
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["1.0.0"]  # no temp file left
    assert verify(bundle).manifest.version == "1.0.0"
    assert os.stat(bundle / SIGNATURE_NAME).st_mode & 0o777 == 0o644
    # Re-signing with another key replaces the signature; the old key no longer passes.
    sign_bundle(bundle, keys["mallory"].private)
    rt.load(bundle, trusted_keys=[keys["mallory"].public])
    with pytest.raises(BundleError, match="signature-trust"):
        rt.load(bundle, trusted_keys=[keys["alice"].public])


def test_wrong_key_refused(signed: Path, keys: dict[str, KeyPair], sessions: list[int]) -> None:
    err = _refused(signed, [keys["mallory"].public], sessions)
    assert err.rule == "signature-trust"
    assert f"signed by key sha256:{_fingerprint(keys['alice'].public)[:16]}" in str(err)
    assert _fingerprint(keys["mallory"].public)[:16] in str(err)
    line = one_error_line(
        handoff("verify", str(signed), "--trusted-key", str(keys["mallory"].public))
    )
    assert "[signature-trust]" in line and "not one of the 1 trusted key" in line


def test_unsigned_refused(
    store: Path, keys: dict[str, KeyPair], tmp_path: Path, sessions: list[int]
) -> None:
    bundle = copy_bundle(store, "1.0.0", tmp_path / "u")
    err = _refused(bundle, [keys["alice"].public], sessions)
    assert err.rule == "signature-trust" and "not signed" in str(err)
    line = one_error_line(
        handoff("verify", str(bundle), "--trusted-key", str(keys["alice"].public))
    )
    assert "[signature-trust]" in line and f"handoff sign {bundle}" in line
    err = _refused(bundle, [], sessions)  # an empty trust list trusts nothing
    assert "none was given" in str(err)


def test_one_flipped_byte_in_any_file_is_refused(
    signed: Path, keys: dict[str, KeyPair], sessions: list[int]
) -> None:
    files = sorted(p for p in signed.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"manifest.json", SIGNATURE_NAME, "fp32.onnx"}
    for path in files:
        original = path.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        path.write_bytes(bytes(flipped))
        try:
            err = _refused(signed, [keys["alice"].public], sessions)
        finally:
            path.write_bytes(original)
        rel = path.relative_to(signed).as_posix()
        if rel == SIGNATURE_NAME:
            assert err.rule == "signature-trust", err
        else:  # caught by the listing's digests first, or by the signature
            assert err.rule in {"digest", "manifest-digest", "json", "schema", "signature-trust"}, (
                err
            )
    rt.load(signed, trusted_keys=[keys["alice"].public])  # restored: passes again


def _rewrite_consistently(bundle: Path, rel: str, data: bytes) -> None:
    """What an attacker with write access but no key would do: change a file and update the
    manifest's listing and self-digest so that every integrity rule still holds."""
    (bundle / rel).write_bytes(data)
    m = json.loads((bundle / "manifest.json").read_text())
    digest = hashlib.sha256(data).hexdigest()
    for f in m["files"]:
        if f["path"] == rel:
            f["sha256"], f["bytes"] = digest, len(data)
    for v in m["variants"]:
        if v["file"] == rel:
            v["sha256"] = digest
    m.pop(DIGEST_FIELD)
    m[DIGEST_FIELD] = self_digest(m)
    (bundle / "manifest.json").write_bytes(dumps_canonical(m))


def test_consistent_tampering_is_caught_only_by_the_signature(
    signed: Path, keys: dict[str, KeyPair], sessions: list[int]
) -> None:
    model = signed / "models" / "fp32.onnx"
    data = bytearray(model.read_bytes())
    data[-40] ^= 0x10  # a weight inside the last initializer: still a loadable model
    _rewrite_consistently(signed, "models/fp32.onnx", bytes(data))
    verify(signed)  # every integrity rule holds: only the signature can tell
    err = _refused(signed, [keys["alice"].public], sessions)
    assert err.rule == "signature-trust" and "changed after signing" in str(err)
    assert "models/fp32.onnx" in str(err)
    rt.load(signed)  # without trusted keys, as today: the bundle is self-consistent


def test_replaced_or_garbled_signature(
    store: Path, signed: Path, keys: dict[str, KeyPair], tmp_path: Path, sessions: list[int]
) -> None:
    sig = signed / SIGNATURE_NAME
    good = sig.read_bytes()
    alice = [keys["alice"].public]

    # A genuine signature of another bundle (1.1.0, same key) does not transfer.
    other = copy_bundle(store, "1.1.0", tmp_path / "o")
    sign_bundle(other, keys["alice"].private)
    sig.write_bytes((other / SIGNATURE_NAME).read_bytes())
    err = _refused(signed, alice, sessions)
    assert err.rule == "signature-trust" and "changed after signing" in str(err)

    # Garbage, truncation, an empty file.
    for junk in (b"\x00garbage\xff", good[: len(good) // 2], b""):
        sig.write_bytes(junk)
        err = _refused(signed, alice, sessions)
        assert err.rule == "signature-trust" and "not a readable" in str(err)

    # Mallory signs, then writes alice's fingerprint into the (unsigned) key hint.
    sign_bundle(signed, keys["mallory"].private)
    doc = json.loads(sig.read_text())
    doc["verificationMaterial"]["publicKey"]["hint"] = _fingerprint(keys["alice"].public)
    sig.write_text(json.dumps(doc))
    err = _refused(signed, alice, sessions)
    assert err.rule == "signature-trust" and "does not verify" in str(err)

    # Too big, or not a regular file.
    sig.write_bytes(b" " * ((1 << 20) + 1))
    assert "at most" in str(_refused(signed, alice, sessions))
    sig.unlink()
    sig.symlink_to(other / SIGNATURE_NAME)
    assert _refused(signed, alice, sessions).rule == "link"


def test_without_trusted_keys_behaviour_is_as_today(signed: Path) -> None:
    (signed / SIGNATURE_NAME).write_bytes(b"not a signature")
    assert rt.load(signed).version == "1.0.0"
    proc = handoff("verify", str(signed))
    assert proc.returncode == 0 and "signature" not in proc.stdout


def test_inspect_shows_whether_and_by_whom(
    store: Path, signed: Path, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    unsigned = copy_bundle(store, "1.1.0", tmp_path / "i")
    out = handoff("inspect", str(unsigned)).stdout
    assert "signature: none (unsigned)" in out
    out = handoff("inspect", str(signed)).stdout
    assert f"signed by key sha256:{_fingerprint(keys['alice'].public)[:16]}" in out
    (signed / SIGNATURE_NAME).write_bytes(b"{}")
    assert "present but unreadable" in handoff("inspect", str(signed)).stdout


def test_signing_refuses_a_broken_bundle_and_bad_keys(
    store: Path, keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    bundle = copy_bundle(store, "1.0.0", tmp_path / "b")
    (bundle / "report.md").write_text("tampered before signing")
    with pytest.raises(BundleError, match=r"\[digest\]"):
        sign_bundle(bundle, keys["alice"].private)
    assert not (bundle / SIGNATURE_NAME).exists()
    good = copy_bundle(store, "1.0.0", tmp_path / "g")
    line = one_error_line(handoff("sign", str(good), "--key", str(keys["alice"].public)))
    assert "cannot read a PEM private key" in line
    line = one_error_line(handoff("verify", str(good), "--trusted-key", str(keys["alice"].private)))
    assert "cannot read a PEM public key" in line
    with pytest.raises(LabkitError, match="no such file"):
        rt.load(good, trusted_keys=[tmp_path / "missing.pub"])
    assert not (good / SIGNATURE_NAME).exists()


def test_cli_sign_then_verify(store: Path, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    bundle = copy_bundle(store, "1.0.0", tmp_path / "c")
    proc = handoff("sign", str(bundle), env={"LABKIT_SIGN_KEY": str(keys["alice"].private)})
    assert proc.returncode == 0, proc.stderr
    assert _fingerprint(keys["alice"].public)[:16] in proc.stdout
    proc = handoff(
        "verify",
        str(bundle),
        "--trusted-key",
        str(keys["mallory"].public),
        "--trusted-key",
        str(keys["alice"].public),
    )
    assert proc.returncode == 0, proc.stderr
