"""Host profiles on this host: where they live, whether one may be used, writing them.

A profile (:class:`labkit.bundle.profile.HostProfile`, the typed contract) lives outside the
immutable bundle: in the profile directory when one is configured (``--profile-dir`` or
``$LABKIT_PROFILE_DIR``: ``DIR/NAME/VERSION/<host-key>.json``, for stores mounted
read-only), else beside the store's bundles (``STORE/.tuning/NAME/VERSION/<host-key>.json``;
``.tuning`` is not a valid bundle name, so store listings skip it).

It is untrusted input. :func:`resolve` uses one only when every check passes, and otherwise
returns a one-line note saying why it was ignored; it never raises, so a bad profile never
takes a version offline. The checks: strict JSON within size and depth caps, known fields
only, typed values (:meth:`HostProfile.from_json`); this bundle's manifest digest, this
host's key and engine versions; threads and streams within this host's cores, a variant the
bundle has and may run on that engine (:meth:`HostProfile.check_fit`); an engine installed
here offering that precision for that variant; and, with trusted keys, arithmetic the signed
manifest allows (exact precision) unless the operator opted in to reduced precision or the
profile itself is signed by a trusted key.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.bundle.manifest import Manifest
from labkit.bundle.profile import MAX_PROFILE_BYTES, PROFILE_VERSION, HostProfile
from labkit.bundle.writer import DIR_MODE, FILE_MODE
from labkit.errors import FormatError, LabkitError, one_line
from labkit.runtime import engines
from labkit.runtime.engines import Candidate
from labkit.runtime.machine import cpu_info, physical_cores

if TYPE_CHECKING:
    from labkit.runtime.signing import TrustedKey

__all__ = [
    "MAX_PROFILE_BYTES",
    "PROFILE_DIR_ENV",
    "PROFILE_MODE",
    "PROFILE_VERSION",
    "TUNING_DIR",
    "Profile",
    "host",
    "host_key",
    "profile_dir",
    "profile_path",
    "read",
    "read_bytes",
    "resolve",
    "signature_path",
    "write",
]

TUNING_DIR = ".tuning"
PROFILE_DIR_ENV = "LABKIT_PROFILE_DIR"
#: Profiles are world-readable like bundles ([modes]): a server running as another user
#: must see them.
PROFILE_MODE = FILE_MODE
SIGNATURE_SUFFIX = ".sig"


def host() -> dict[str, Any]:
    """The facts a profile is keyed on: what makes one CPU run a graph unlike another."""
    cpu = cpu_info()
    return {
        "model": cpu["model"],
        "machine": cpu["machine"],
        "flags": cpu["flags"],
        "logical_cores": cpu["cores"],
        "physical_cores": physical_cores(),
    }


def host_key(h: Mapping[str, Any] | None = None) -> str:
    h = h or host()
    keyed = {k: h.get(k) for k in ("model", "machine", "flags", "logical_cores", "physical_cores")}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def profile_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The configured profile directory: ``explicit``, else ``$LABKIT_PROFILE_DIR``, else
    None (profiles live beside the store)."""
    if explicit is not None and str(explicit):
        return Path(explicit)
    env = os.environ.get(PROFILE_DIR_ENV)
    return Path(env) if env else None


def profile_path(
    bundle_root: Path,
    manifest: Manifest,
    key: str | None = None,
    *,
    directory: str | os.PathLike[str] | None = None,
) -> Path:
    """Where this host's profile of the bundle at ``bundle_root`` lives (module docstring)."""
    base = profile_dir(directory)
    if base is None:
        base = Path(bundle_root).resolve().parent.parent / TUNING_DIR
    return base / manifest.name / manifest.version / f"{key or host_key()}.json"


def signature_path(path: Path) -> Path:
    """``<profile>.json.sig``: what ``handoff sign --profile`` writes."""
    return path.with_name(path.name + SIGNATURE_SUFFIX)


@dataclass(frozen=True)
class Profile:
    """A profile that passed every check for this bundle on this host."""

    path: Path
    profile: HostProfile
    signed_by: str | None = None  # fingerprint of the trusted key that signed it

    @property
    def doc(self) -> dict[str, Any]:
        return self.profile.to_dict()

    @property
    def candidate(self) -> Candidate:
        return Candidate.from_dict(self.profile.chosen.candidate.to_dict())

    def describe(self) -> str:
        c, s = self.candidate, self.profile.chosen.stats
        signed = f", signed by sha256:{self.signed_by[:16]}…" if self.signed_by else ""
        return (
            f"{c.label} ({self.profile.objective}; p50 {s.get('p50_ms') or 0:.3f} ms, "
            f"{s.get('throughput_per_s') or 0:.0f}/s{signed}) from {self.path}"
        )


def _make_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents ``0755`` whatever the umask (folders that
    exist are left as they are), so a server running as another user can reach profiles."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        os.chmod(d, DIR_MODE)


def write(path: Path, doc: HostProfile | Mapping[str, Any], *, mode: int = PROFILE_MODE) -> Path:
    """Atomically (a reader sees the old profile or the new one, never half), checked by the
    strict reader's own rules first, mode ``mode`` (0644: readable by a server running as
    another user; folders it creates get 0755). A signature of the old bytes is removed: it
    no longer signs anything."""
    prof = doc if isinstance(doc, HostProfile) else HostProfile.from_dict(dict(doc))
    data = prof.to_json()
    _make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=".profile-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        signature_path(path).unlink(missing_ok=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_bytes(path: Path, limit: int = MAX_PROFILE_BYTES) -> bytes:
    """A profile's bytes: a regular file (a FIFO, device or directory is refused: opened
    non-blocking and checked on the descriptor), at most ``limit`` bytes. Symbolic links are
    followed: profile directories mounted from a Kubernetes ConfigMap are made of them."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise LabkitError(f"cannot read {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{path} is not a regular file", rule="profile")
        if st.st_size > limit:
            raise FormatError(f"profile is {st.st_size} bytes; at most {limit}", rule="profile")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FormatError(f"profile grew past {limit} bytes while read", rule="profile")
    return data


def read(path: Path) -> dict[str, Any]:
    """A profile's content, strictly parsed (raises LabkitError saying why not)."""
    return HostProfile.from_json(read_bytes(path)).to_dict()


def _engine_reason(c: Candidate, manifest: Manifest) -> str | None:
    try:
        engine = engines.get(c.engine)
    except LabkitError as exc:
        return str(exc)
    if not engine.available():
        return f"engine {c.engine!r} is not installed here"
    offered = engine.precisions(manifest.variant(c.variant), host())
    if c.precision not in offered:
        return (
            f"engine {c.engine!r} offers {list(offered) or 'nothing'} for variant "
            f"{c.variant!r} on this CPU, not precision {c.precision!r}"
        )
    return None


def _signer(path: Path, data: bytes, keys: Sequence[TrustedKey]) -> tuple[str | None, str]:
    """(fingerprint of the trusted key that signed exactly ``data``, or None; why not)."""
    if not signature_path(path).is_file():
        return None, "the profile is not signed"
    from labkit.runtime.signing import check_profile_signature

    try:
        return check_profile_signature(signature_path(path), data, keys).fingerprint, ""
    except LabkitError as exc:
        return None, f"its signature is not accepted ({exc})"


def _trust_reason(
    c: Candidate,
    manifest: Manifest,
    path: Path,
    data: bytes,
    keys: Sequence[TrustedKey],
    allow_reduced_precision: bool,
) -> tuple[str | None, str | None]:
    """(why the profile may not run under ``keys``, or None; the signer's fingerprint)."""
    if c.exact or allow_reduced_precision:
        return None, None
    fingerprint, why_not = _signer(path, data, keys)
    if fingerprint is not None:
        return None, fingerprint
    tol = manifest.variant(c.variant).tolerance
    return (
        f"it chooses {c.precision} arithmetic for variant {c.variant!r}, but the signed "
        f"manifest allows only exact precision for it (fp32, tolerance rel {tol.rel:g}) and "
        f"{why_not}; opt in with --allow-reduced-precision (allow_reduced_precision=True) "
        f"or sign the profile (handoff sign --profile {path} --key KEY.pem)"
    ), None


def check(
    path: Path,
    data: bytes,
    manifest: Manifest,
    *,
    trusted_keys: Sequence[TrustedKey] | None = None,
    allow_reduced_precision: bool = False,
) -> tuple[Profile | None, str | None]:
    """(the profile in ``data`` when it may be used here, else None; why not)."""
    try:
        prof = HostProfile.from_json(data)
    except LabkitError as exc:
        return None, str(exc)
    here = host()
    if prof.host.get("key") != host_key(here):
        return None, (
            f"it was tuned on another CPU ({prof.host.get('model')!r}, this host: "
            f"{here['model']!r}, {here['physical_cores']} cores); run 'handoff tune' again"
        )
    now = engines.versions()
    if dict(prof.engines) != now:
        return None, (
            f"engine versions changed (tuned with {dict(prof.engines)}, now {now}); "
            "run 'handoff tune' again"
        )
    try:
        prof.check_fit(manifest, physical_cores())
    except LabkitError as exc:
        return None, str(exc)
    cand = Candidate.from_dict(prof.chosen.candidate.to_dict())
    why = _engine_reason(cand, manifest)
    if why:
        return None, why
    signer = None
    if trusted_keys is not None:
        why, signer = _trust_reason(
            cand, manifest, path, data, trusted_keys, allow_reduced_precision
        )
        if why:
            return None, why
    return Profile(path, prof, signer), None


def resolve(
    root: Path,
    manifest: Manifest,
    profile: str | os.PathLike[str] | None = "auto",
    *,
    directory: str | os.PathLike[str] | None = None,
    trusted_keys: Sequence[TrustedKey] | None = None,
    allow_reduced_precision: bool = False,
) -> tuple[Profile | None, str | None]:
    """(the profile to use, a one-line note on why none is used) for the bundle at ``root``.

    ``profile="auto"`` looks for this host's profile (see :func:`profile_path`), ``None``
    uses none, a path uses that file. Never raises: whatever is wrong with a profile is the
    note (``tuning profile PATH ignored: reason``), and the bundle runs untuned.
    """
    if profile is None:
        return None, None
    auto = str(profile) == "auto"
    path = profile_path(root, manifest, directory=directory) if auto else Path(profile)
    try:
        if auto and not os.path.lexists(path):
            return None, None
        data = read_bytes(path)
        prof, why = check(
            path,
            data,
            manifest,
            trusted_keys=trusted_keys,
            allow_reduced_precision=allow_reduced_precision,
        )
    except LabkitError as exc:
        prof, why = None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a profile never takes a version offline
        prof, why = None, f"{type(exc).__name__}: {exc}"
    if prof is None:
        return None, one_line(f"tuning profile {path} ignored: {why}")
    return prof, None
