"""Signed bundles ([signature-file], [signature-trust] in docs/bundle-format.md), in the runtime.

The signature is OpenSSF model signing's (``pip install 'labkit[sign]'``): a Sigstore bundle
holding a DSSE envelope over an in-toto statement that lists every file of the bundle
directory with its SHA-256, signed here with an elliptic-curve private key, fully offline.
We never write or parse the cryptographic format ourselves; ``model_signing`` is imported
lazily, so the runtime imports (and loads unsigned bundles) without it.

Checking a signature is bound to what the runtime uses: the signed per-file digests must be
exactly the digests that :func:`labkit.bundle.verify` checked and that
:meth:`VerifiedBundle.read` re-checks on every read, and the signed ``manifest.json`` bytes
must parse to the very manifest being used. So a file swapped between checking and loading
is caught too, and a bundle is hashed once, not twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.bundle.integrity import VerifiedBundle, _check_entry, verify
from labkit.bundle.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, SIGNATURE_NAME, Manifest
from labkit.errors import IntegrityError, LabkitError, MissingDependencyError

__all__ = [
    "SIGN_KEY_ENV",
    "SIGNATURE_NAME",
    "SignatureInfo",
    "TrustedKey",
    "as_trusted_keys",
    "check_profile_signature",
    "check_signature",
    "load_trusted_keys",
    "sign_bundle",
    "sign_profile",
    "signature_info",
]

SIGN_KEY_ENV = "LABKIT_SIGN_KEY"
MAX_SIGNATURE_BYTES = 1 << 20
_RULE = "signature-trust"


def _ms() -> Any:
    """model_signing, imported on first use (the runtime must import without it)."""
    try:
        import model_signing.hashing
        import model_signing.signing
    except ImportError:
        raise MissingDependencyError("model-signing", "sign") from None
    return model_signing


def _short(fingerprint: str) -> str:
    return f"sha256:{fingerprint[:16]}…"


@dataclass(frozen=True)
class TrustedKey:
    """A public key a bundle may be signed by; ``fingerprint`` is the hex SHA-256 of its
    PEM SubjectPublicKeyInfo (what model_signing records as the signature's key hint)."""

    path: str
    fingerprint: str
    public_key: Any


@dataclass(frozen=True)
class SignatureInfo:
    """What ``signature.sig`` claims, read without any cryptography (for ``inspect``)."""

    path: Path
    key_fingerprint: str | None  # None: unreadable or no key hint
    error: str | None = None

    def describe(self) -> str:
        if self.error:
            return f"present but unreadable ({self.error})"
        who = _short(self.key_fingerprint) if self.key_fingerprint else "an unnamed key"
        return f"signed by key {who} (not checked: handoff verify --trusted-key PUB)"


def _pem_fingerprint(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def _read_key(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise LabkitError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise LabkitError(f"{what} {path}: cannot be read ({exc.strerror})") from None


def load_trusted_keys(paths: Iterable[str | os.PathLike[str]]) -> tuple[TrustedKey, ...]:
    """Read PEM public keys once, so a bad key file is a startup error, not a refusal."""
    _ms()  # the same install command for every missing piece
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    keys = []
    for p in paths:
        try:
            key = serialization.load_pem_public_key(_read_key(p, "trusted key"))
        except (ValueError, TypeError) as exc:
            raise LabkitError(
                f"trusted key {p}: cannot read a PEM public key ({exc}); "
                "pass the .pub file written next to the signing key"
            ) from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise LabkitError(
                f"trusted key {p}: {type(key).__name__} is not an elliptic-curve "
                "key; model signing uses EC keys (P-256, P-384 or P-521)"
            )
        keys.append(TrustedKey(str(p), _pem_fingerprint(key), key))
    return tuple(keys)


def as_trusted_keys(items: Iterable[str | os.PathLike[str] | TrustedKey]) -> tuple[TrustedKey, ...]:
    """Keys already loaded pass through; paths are read (see :func:`load_trusted_keys`)."""
    items = list(items)
    paths = [k for k in items if not isinstance(k, TrustedKey)]
    loaded = iter(load_trusted_keys(paths)) if paths else iter(())
    return tuple(k if isinstance(k, TrustedKey) else next(loaded) for k in items)


def _read_signature_bytes(root: Path) -> bytes | None:
    try:
        st = _check_entry(root / SIGNATURE_NAME, SIGNATURE_NAME)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SIGNATURE_BYTES:
        raise IntegrityError(
            f"{SIGNATURE_NAME} must be a regular file of at most {MAX_SIGNATURE_BYTES} bytes",
            rule=_RULE,
        )
    with open(root / SIGNATURE_NAME, "rb") as f:
        return f.read(MAX_SIGNATURE_BYTES + 1)


def signature_info(path: str | os.PathLike[str]) -> SignatureInfo | None:
    """Whether a bundle carries a signature and which key it names (unverified)."""
    root = Path(path)
    try:
        data = _read_signature_bytes(root)
    except IntegrityError as exc:
        return SignatureInfo(root / SIGNATURE_NAME, None, str(exc))
    if data is None:
        return None
    try:
        hint = json.loads(data)["verificationMaterial"]["publicKey"].get("hint")
    except (ValueError, KeyError, TypeError, AttributeError):
        return SignatureInfo(root / SIGNATURE_NAME, None, "not a model-signing signature")
    return SignatureInfo(root / SIGNATURE_NAME, hint if isinstance(hint, str) else None)


def _verifier(key: TrustedKey) -> Any:
    """model_signing's EC-key verifier, fed a key already loaded (and checked) by us: its
    constructor only reads a PEM file, and the key was read once at startup."""
    from model_signing._signing import sign_ec_key

    verifier = sign_ec_key.Verifier.__new__(sign_ec_key.Verifier)
    verifier._public_key = key.public_key
    return verifier


def _signed_digests(
    sig_path: Path, keys: Sequence[TrustedKey]
) -> tuple[TrustedKey, dict[str, str]]:
    """Verify the signature's cryptography with each trusted key; return the signed
    path → sha256 listing and the key that signed it."""
    _ms()
    from model_signing._signing import sign_sigstore_pb

    try:
        signature = sign_sigstore_pb.Signature.read(sig_path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same refusal
        raise IntegrityError(
            f"{SIGNATURE_NAME} is not a readable model-signing signature "
            f"({type(exc).__name__}: {str(exc)[:120]})",
            rule=_RULE,
        ) from None
    material = signature.bundle.verification_material
    public_key = material.public_key if material is not None else None
    hint = (public_key.hint if public_key is not None else None) or None
    candidates = [k for k in keys if hint is None or k.fingerprint == hint]
    if not candidates:
        trusted = ", ".join(_short(k.fingerprint) for k in keys)
        raise IntegrityError(
            f"signed by key {_short(hint or '')}, which is not one of the "
            f"{len(keys)} trusted key(s) ({trusted})",
            rule=_RULE,
        )
    errors = []
    for key in candidates:
        try:
            # model_signing prints a warning to stdout for signatures without a key hint;
            # stdout may be a JSON answer (`verify --json`), so it goes to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                manifest = _verifier(key).verify(signature)
        except Exception as exc:  # noqa: BLE001 - cryptography raises several types
            errors.append(f"{type(exc).__name__}: {str(exc)[:120]}".rstrip(": "))
            continue
        digests = {}
        for rd in manifest.resource_descriptors():
            if rd.digest.algorithm != "sha256":
                raise IntegrityError(
                    f"{SIGNATURE_NAME} hashes {rd.identifier!r} with "
                    f"{rd.digest.algorithm}; labkit signs with sha256",
                    rule=_RULE,
                )
            digests[str(rd.identifier)] = rd.digest.digest_hex
        return key, digests
    raise IntegrityError(
        f"{SIGNATURE_NAME} does not verify with trusted key "
        f"{_short(candidates[0].fingerprint)}: the signature or the content "
        f"it signs was altered ({errors[0]})",
        rule=_RULE,
    )


def _read_manifest_bytes(root: Path) -> bytes:
    _check_entry(root / MANIFEST_NAME, MANIFEST_NAME)
    with open(root / MANIFEST_NAME, "rb") as f:
        return f.read(MAX_MANIFEST_BYTES + 1)


def _bind(vb: VerifiedBundle, digests: dict[str, str]) -> None:
    """The signed listing must be exactly the verified one, manifest included."""
    listed = {f.path: f.sha256 for f in vb.manifest.files}
    expected = set(listed) | {MANIFEST_NAME}
    extra, missing = sorted(set(digests) - expected), sorted(expected - set(digests))
    if extra or missing:
        what = "; ".join(
            filter(
                None,
                [
                    f"signed but not in the bundle: {', '.join(extra[:5])}" if extra else "",
                    f"in the bundle but not signed: {', '.join(missing[:5])}" if missing else "",
                ],
            )
        )
        raise IntegrityError(
            f"the signature covers other files than the bundle holds ({what})", rule=_RULE
        )
    for rel, digest in sorted(listed.items()):
        if digests[rel] != digest:
            raise IntegrityError(
                f"{rel!r} changed after signing (sha256 {digest[:12]}…, "
                f"signed {digests[rel][:12]}…)",
                rule=_RULE,
            )
    data = _read_manifest_bytes(vb.root)
    if hashlib.sha256(data).hexdigest() != digests[MANIFEST_NAME]:
        raise IntegrityError(f"{MANIFEST_NAME} changed after signing", rule=_RULE)
    if Manifest.from_json(data) != vb.manifest:
        raise IntegrityError(
            f"{MANIFEST_NAME} changed while the bundle was being loaded", rule=_RULE
        )


def check_signature(vb: VerifiedBundle, keys: Sequence[TrustedKey]) -> TrustedKey:
    """Refuse ``vb`` unless one of ``keys`` signed exactly its files; return that key."""
    if not keys:
        raise IntegrityError(
            "trusted keys were required but none was given; pass at least one public key",
            rule=_RULE,
        )
    if _read_signature_bytes(vb.root) is None:
        raise IntegrityError(
            f"the bundle is not signed (no {SIGNATURE_NAME}) and only signed "
            f"bundles are trusted; sign it: handoff sign {vb.root} --key KEY",
            rule=_RULE,
        )
    key, digests = _signed_digests(vb.root / SIGNATURE_NAME, keys)
    _bind(vb, digests)
    return key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sign_bundle(
    path: str | os.PathLike[str], key: str | os.PathLike[str], *, password: str | None = None
) -> str:
    """Sign a verified bundle with a PEM EC private key; return the key's fingerprint.

    The signature is written to a temporary file beside the bundle directory, then renamed
    into ``BUNDLE/signature.sig``: a reader sees no signature or the whole one, never part.
    The manifest, the version and every other file stay as they are.
    """
    ms = _ms()
    vb = verify(path)  # never bless a bundle that is already broken
    root = vb.root
    try:
        from cryptography.hazmat.primitives import serialization

        private = serialization.load_pem_private_key(
            _read_key(key, "signing key"), password.encode() if password else None
        )
        fingerprint = _pem_fingerprint(private.public_key())
    except (ValueError, TypeError) as exc:
        raise LabkitError(f"signing key {key}: cannot read a PEM private key ({exc})") from None
    hashing = (
        ms.hashing.Config()
        .use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)
        .set_ignored_paths(paths=[SIGNATURE_NAME], ignore_git_paths=False)
    )
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{root.name}.", suffix=".sig.tmp", dir=root.resolve().parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            (
                ms.signing.Config()
                .use_elliptic_key_signer(private_key=key, password=password)
                .set_hashing_config(hashing)
                .sign(root, tmp)
            )
        except ValueError as exc:
            raise LabkitError(f"signing key {key}: {exc}") from None
        # What was signed must be the bundle that was verified (no file swapped meanwhile),
        # and the signature must verify with the key's own public half.
        own = TrustedKey(str(key), fingerprint, private.public_key())
        _bind(vb, _signed_digests(tmp, [own])[1])
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, root / SIGNATURE_NAME)
        _fsync_dir(root)
    finally:
        tmp.unlink(missing_ok=True)
    return fingerprint


# A signed profile: model signing over the one file, so the signed listing is {".": sha256}.
_PROFILE_ENTRY = "."


def check_profile_signature(sig_path: Path, data: bytes, keys: Sequence[TrustedKey]) -> TrustedKey:
    """Refuse unless one of ``keys`` signed exactly the profile bytes ``data`` (the bytes
    that were read and will be parsed); return that key."""
    try:
        st = _check_entry(sig_path, sig_path.name)
    except FileNotFoundError:
        raise IntegrityError(f"{sig_path} does not exist", rule=_RULE) from None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SIGNATURE_BYTES:
        raise IntegrityError(
            f"{sig_path.name} must be a regular file of at most {MAX_SIGNATURE_BYTES} bytes",
            rule=_RULE,
        )
    key, digests = _signed_digests(sig_path, keys)
    if set(digests) != {_PROFILE_ENTRY}:
        raise IntegrityError(
            f"{sig_path.name} signs {len(digests)} file(s), not one profile", rule=_RULE
        )
    if digests[_PROFILE_ENTRY] != hashlib.sha256(data).hexdigest():
        raise IntegrityError(f"the profile changed after {sig_path.name} was made", rule=_RULE)
    return key


def sign_profile(
    path: str | os.PathLike[str], key: str | os.PathLike[str], *, password: str | None = None
) -> tuple[Path, str]:
    """Sign a host profile with a PEM EC private key: ``PROFILE.json.sig`` beside it (the
    key's fingerprint is returned with its path). With it, a server given the key as trusted
    may run the profile's choice even where it is not the signed bundle's exact arithmetic:
    the key's owner vouches for it. The profile must pass the strict reader first."""
    from labkit.bundle.profile import HostProfile
    from labkit.runtime.profile import read_bytes, signature_path

    ms = _ms()
    target = Path(path)
    data = read_bytes(target)
    HostProfile.from_json(data)  # never bless a profile no reader would accept
    try:
        from cryptography.hazmat.primitives import serialization

        private = serialization.load_pem_private_key(
            _read_key(key, "signing key"), password.encode() if password else None
        )
        fingerprint = _pem_fingerprint(private.public_key())
    except (ValueError, TypeError) as exc:
        raise LabkitError(f"signing key {key}: cannot read a PEM private key ({exc})") from None
    hashing = ms.hashing.Config().use_file_serialization(
        hashing_algorithm="sha256", allow_symlinks=False
    )
    out = signature_path(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".sig.tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            (
                ms.signing.Config()
                .use_elliptic_key_signer(private_key=key, password=password)
                .set_hashing_config(hashing)
                .sign(target, tmp)
            )
        except ValueError as exc:
            raise LabkitError(f"signing key {key}: {exc}") from None
        # The signature must be over the bytes that were checked (not a file swapped since).
        own = TrustedKey(str(key), fingerprint, private.public_key())
        check_profile_signature(tmp, data, [own])
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, fingerprint
