"""Export bundles into a Triton Inference Server model repository (onnxruntime backend, CPU).

``OUT/NAME/config.pbtxt``, ``OUT/NAME/<n>/model.onnx`` per version (``<n>/labkit.json`` says
which bundle it is), ``OUT/NAME/warmup/`` (the newest version's golden inputs, raw) and
``OUT/NAME/labels.txt`` when the bundle has labels.

- ``export_triton(STORE/NAME, OUT)`` writes every version of the model; ``export_triton(
  BUNDLE, OUT)`` adds one version beside those already there (the next number, or
  ``triton_version``) and never deletes another. A version already exported is left as it
  is; a different bundle under the same number needs ``force``.
- Each bundle is verified first and its model bytes re-hashed as they are read.
- Batching (``max_batch_size`` > 0 and ``dynamic_batching``) is declared only when every
  version in the folder proved, with the one batching probe ``handoff serve`` uses
  (``labkit.runtime.batching``), that its rows are independent at ``max_batch_size`` and
  the prime below it; otherwise ``max_batch_size: 0`` and full shapes.
- One config describes every version, so every version must have the same signature.
- The thread count is the one ``handoff tune`` chose on this host for the newest version
  (ONNX Runtime, exact precision, the exported variant), when there is such a profile.

Files are staged beside their final place and renamed in, version folders first and the
config last, so a Triton polling the repository sees a complete model at every moment.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labkit.bundle import MANIFEST_NAME, Signature, Store, VerifiedBundle, verify
from labkit.bundle.files import read_file
from labkit.bundle.writer import DIR_MODE, FILE_MODE
from labkit.errors import BundleNotFoundError, LabkitError, StoreError
from labkit.runtime import Model
from labkit.runtime.batching import BatchProbe, probe_batching, probe_sizes
from labkit.serve.triton import (
    LABELS_FILE,
    WARMUP_DIR,
    TritonConfig,
    WarmupInput,
    render_config,
    triton_type,
)

__all__ = ["TritonExport", "export_triton"]

RECORD = "labkit.json"  # in each version folder: which bundle it holds
MAX_RECORD_BYTES = 1 << 20


@dataclass
class TritonExport:
    """What an export wrote: ``versions`` (every version now in the folder), ``written``
    (those this export added or replaced), ``skipped`` (left out, with the reason)."""

    path: Path
    name: str
    versions: dict[int, str] = field(default_factory=dict)
    written: list[int] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    batching: bool = False
    batching_reason: str = ""
    threads: int | None = None
    instances: int = 1
    warmup: bool = False
    labels: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.name,
            "versions": {str(n): v for n, v in sorted(self.versions.items())},
            "written": self.written,
            "skipped": self.skipped,
            "batching": {"on": self.batching, "reason": self.batching_reason},
            "threads": self.threads,
            "instances": self.instances,
            "warmup": self.warmup,
            "labels": self.labels,
        }


@dataclass(frozen=True)
class _Version:
    """One version in (or going into) the model folder."""

    number: int
    version: str
    digest: str
    variant: str
    signature: dict[str, Any]
    probe: dict[str, Any]

    def record(self) -> bytes:
        return (
            json.dumps(
                {
                    "version": self.version,
                    "manifest_digest": self.digest,
                    "variant": self.variant,
                    "tensors": self.signature,  # the bundle's signature (inputs, outputs)
                    "batching_probe": self.probe,
                },
                indent=2,
                sort_keys=True,
            ).encode()
            + b"\n"
        )


def _bundles(source: Path) -> list[Path]:
    """One bundle, or every version of STORE/NAME in semver order."""
    if (source / MANIFEST_NAME).exists():
        return [source]
    if source.is_dir():
        versions = Store(source.parent).versions(source.name)
        if versions:
            return [source / v for v in versions]
    raise BundleNotFoundError(
        f"{source} is neither a bundle nor a model folder of a store (STORE/NAME)",
        rule="listing",
    )


def _existing(folder: Path) -> dict[int, _Version]:
    """The versions labkit already wrote into ``folder``; folders it did not write refuse."""
    found: dict[int, _Version] = {}
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            doc = json.loads(read_file(entry, RECORD, max_bytes=MAX_RECORD_BYTES))
            found[int(entry.name)] = _Version(
                int(entry.name),
                str(doc["version"]),
                str(doc["manifest_digest"]),
                str(doc["variant"]),
                Signature.from_dict(doc["tensors"]).to_dict(),
                dict(doc["batching_probe"]),
            )
        except (OSError, LabkitError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"{entry} is a version folder labkit did not write or cannot read ({exc}); "
                "export into another repository, or remove it"
            ) from None
    return found


def _stage_dir(parent: Path, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".labkit-{prefix}-", dir=parent))


def _swap_in(staging: Path, target: Path) -> None:
    """Publish ``staging`` (the bundle's modes: readable by a Triton running as another
    user) and rename it to ``target``; an old ``target`` is moved aside first, then removed."""
    for p in staging.iterdir():
        os.chmod(p, FILE_MODE)
    os.chmod(staging, DIR_MODE)
    old = None
    if target.exists():
        old = target.with_name(f".labkit-old-{target.name}-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".labkit-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tuned_threads(vb: VerifiedBundle, variant: str) -> tuple[int | None, int | None]:
    """(threads, streams) from this host's profile for the bundle, when it chose ONNX
    Runtime at exact precision for ``variant``; (None, None) otherwise."""
    from labkit.runtime.engines import DEFAULT_ENGINE
    from labkit.runtime.profile import resolve

    try:
        prof, _ = resolve(vb.root, vb.manifest, "auto")
    except LabkitError:
        return None, None
    if prof is None:
        return None, None
    c = prof.candidate
    if c.engine != DEFAULT_ENGINE or not c.exact or c.variant != variant:
        return None, None
    return c.threads, c.streams


def _warmup_files(vb: VerifiedBundle, batched: bool) -> tuple[list[WarmupInput], dict[str, bytes]]:
    """The warm-up sample from the golden inputs: one row when batching (Triton repeats it
    up to the batch size), all golden rows as one request otherwise."""
    golden = vb.read_npz(vb.manifest.golden.inputs)
    inputs, files = [], {}
    for i, spec in enumerate(vb.manifest.signature.inputs):
        arr = np.ascontiguousarray(golden[spec.name])
        if batched:
            arr = arr[0]
        name = f"input_{i}"
        triton_type(spec.dtype, spec.name)  # refuses a dtype Triton cannot take
        dims = tuple(int(d) for d in arr.shape) or (1,)
        inputs.append(WarmupInput(spec.name, spec.dtype, dims, name))
        files[name] = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    return inputs, files


def _label_output(vb: VerifiedBundle) -> str | None:
    labels = vb.manifest.labels
    outputs = vb.manifest.signature.outputs
    if not labels:
        return None
    for t in outputs:
        if t.shape and t.shape[-1] == len(labels):
            return t.name
    return outputs[0].name if len(outputs) == 1 else None


def export_triton(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    variant: str | None = None,
    name: str | None = None,
    max_batch_size: int = 32,
    instances: int | None = None,
    max_queue_delay_us: int = 500,
    max_queue_size: int = 128,
    triton_version: int | None = None,
    force: bool = False,
) -> TritonExport:
    """Write ``source`` (a bundle, or STORE/NAME for every version) into repository ``out``."""
    if (instances is not None and instances < 1) or max_batch_size < 0:
        raise ValueError("--instances must be >= 1 and --max-batch-size >= 0")
    if triton_version is not None and triton_version < 1:
        raise ValueError("--triton-version must be >= 1")
    source = Path(source)
    paths = _bundles(source)
    if triton_version is not None and len(paths) > 1:
        raise ValueError("--triton-version numbers one bundle; pass BUNDLE, not STORE/NAME")
    first = verify(paths[-1])
    model_name = name or first.manifest.name
    out = Path(out)
    folder = out / model_name
    have = _existing(folder)
    result = TritonExport(folder, model_name)
    reference = next(iter(have.values())).signature if have else first.manifest.signature.to_dict()
    sizes = list(probe_sizes(max_batch_size))
    staged: list[tuple[_Version, bytes]] = []
    last: tuple[VerifiedBundle, str] | None = None  # (bundle, variant) exported last
    for path in paths:
        vb = first if path == paths[-1] else verify(path)
        m = vb.manifest
        if m.signature.to_dict() != reference:
            why = (
                f"its signature differs from the other versions' ({m.signature}); Triton "
                "describes one signature for every version of a model: export it with "
                "--name NEW_NAME or into another repository"
            )
            if len(paths) == 1:
                raise StoreError(f"{m.name} {m.version}: {why}")
            result.skipped.append({"version": m.version, "reason": why})
            continue
        same = [v for v in have.values() if v.version == m.version]
        if same and triton_version not in (None, same[0].number):
            raise StoreError(
                f"{m.name} {m.version} is already version {same[0].number} in {folder}; "
                "a version is exported once"
            )
        if same and same[0].digest == m.digest and not force:
            result.skipped.append({"version": m.version, "reason": "already exported"})
            last = (vb, same[0].variant)
            continue
        if same and same[0].digest != m.digest and not force:
            raise StoreError(
                f"{folder / str(same[0].number)} holds another bundle {m.version} "
                f"(manifest {same[0].digest[:12]}…, this one {m.digest[:12]}…); pass --force "
                "to replace it"
            )
        number = _number(folder, have, staged, same, triton_version, m.version, force)
        model = Model(vb, variant, 1)
        probe: BatchProbe = probe_batching(model, max_batch_size)
        version = _Version(
            number, m.version, m.digest, model.variant, m.signature.to_dict(), probe.to_dict()
        )
        staged.append((version, vb.read(model.variant_info.file)))
        last = (vb, model.variant)
    if last is None:
        raise StoreError(f"nothing to export from {source}: {result.skipped}")
    folder.mkdir(parents=True, exist_ok=True)
    for version, model_bytes in staged:
        stage = _stage_dir(folder, str(version.number))
        (stage / "model.onnx").write_bytes(model_bytes)
        (stage / RECORD).write_bytes(version.record())
        _swap_in(stage, folder / str(version.number))
        result.written.append(version.number)
        have[version.number] = version
    result.versions = {n: have[n].version for n in sorted(have)}
    result.batching, result.batching_reason = _batching([have[n] for n in sorted(have)], sizes)
    _finish(folder, result, *last, max_batch_size, instances, max_queue_delay_us, max_queue_size)
    return result


def _number(
    folder: Path,
    have: dict[int, _Version],
    staged: list[tuple[_Version, bytes]],
    same: list[_Version],
    triton_version: int | None,
    version: str,
    force: bool,
) -> int:
    """The version folder number: the one it already has, the one asked for, or the next."""
    if same:
        return same[0].number
    if triton_version is not None:
        if triton_version in have and not force:
            raise StoreError(
                f"{folder / str(triton_version)} holds {have[triton_version].version}; pass "
                f"--force to replace it, or leave out --triton-version to add {version} as "
                "the next"
            )
        return triton_version
    return max(set(have) | {v.number for v, _ in staged}, default=0) + 1


def _batching(versions: list[_Version], sizes: list[int]) -> tuple[bool, str]:
    """On only when every version in the folder proved independence at these sizes."""
    if not sizes:
        return False, "--max-batch-size is 0 or 1: batching off"
    for v in versions:
        if v.probe.get("sizes") != sizes:
            return False, (
                f"{v.version} was probed at batch sizes {v.probe.get('sizes')}, not {sizes}: "
                "export it again with --force"
            )
        if not v.probe.get("ok"):
            return False, f"{v.version}: {v.probe.get('reason')}"
    return True, str(versions[-1].probe.get("reason", ""))


def _finish(
    folder: Path,
    result: TritonExport,
    newest: VerifiedBundle,
    variant: str,
    max_batch_size: int,
    instances: int | None,
    max_queue_delay_us: int,
    max_queue_size: int,
) -> None:
    """Warm-up data and labels from the bundle exported last, then the config (last of all:
    it is what makes new versions visible to a polling Triton)."""
    batched = result.batching and max_batch_size > 0
    threads, streams = _tuned_threads(newest, variant)
    warmup, files = _warmup_files(newest, batched)
    stage = _stage_dir(folder, WARMUP_DIR)
    for rel, data in files.items():
        (stage / rel).write_bytes(data)
    _swap_in(stage, folder / WARMUP_DIR)
    label_output = _label_output(newest)
    labels = newest.manifest.labels
    if label_output is not None and labels:
        _write_atomic(folder / LABELS_FILE, "".join(f"{x}\n" for x in labels).encode())
    result.threads = threads
    result.instances = instances or (streams if streams and streams > 1 else 1)
    result.warmup = bool(warmup)
    result.labels = label_output is not None
    config = TritonConfig(
        name=result.name,
        signature=newest.manifest.signature,
        batching=result.batching,
        max_batch_size=max_batch_size,
        instances=result.instances,
        max_queue_delay_us=max_queue_delay_us,
        max_queue_size=max_queue_size,
        threads=threads,
        versions=result.versions,
        label_output=label_output,
        warmup=warmup,
    )
    _write_atomic(folder / "config.pbtxt", render_config(config).encode())
