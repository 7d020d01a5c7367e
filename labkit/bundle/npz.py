"""Golden ``.npz`` files read within bounds the manifest sets ([golden]).

A member is read only after its ``.npy`` header declares exactly the dtype and shape the
manifest's signature lists (symbolic dims bound consistently across every golden array), so
its decompressed size is known before anything is inflated: a member whose zip entry claims
more, or whose stream yields more, is refused without reading past the declared size. No
object dtype, no pickle (``allow_pickle`` is never involved: arrays are built from raw bytes
with ``np.frombuffer``), members exactly the listed names.

``check_npz`` reads headers only (verify's integrity pass); ``read_npz`` also reads the data.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from labkit.bundle.tensors import TensorSpec
from labkit.errors import FormatError

if TYPE_CHECKING:
    from labkit.bundle.manifest import Manifest

MAX_GOLDEN_BYTES = 256 << 20  # declared array bytes per golden file
MAX_HEADER_BYTES = 4096  # a .npy header of a plain array is ~128 bytes
_CHUNK = 1 << 20


def _refuse(rel: str, message: str) -> FormatError:
    return FormatError(
        f"{rel}: {message}; golden files hold exactly the signature's arrays", rule="golden"
    )


def golden_specs(manifest: Manifest, rel: str) -> Sequence[TensorSpec]:
    """The arrays a golden file must hold: signature inputs or outputs."""
    sig = manifest.signature
    return sig.inputs if rel == manifest.golden.inputs else sig.outputs


def _open(
    data: bytes, rel: str, specs: Sequence[TensorSpec]
) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _refuse(rel, f"not a readable .npz archive ({exc})") from None
    infos = zf.infolist()
    names = [i.filename for i in infos]
    wanted = [f"{s.name}.npy" for s in specs]
    if len(set(names)) != len(names) or set(names) != set(wanted):
        zf.close()
        missing = sorted(set(wanted) - set(names))
        extra = sorted(set(names) - set(wanted))
        dup = ", some twice" if len(set(names)) != len(names) else ""
        raise _refuse(
            rel,
            f"members are {sorted(names)[:8]!r} (missing {missing[:8]!r}, "
            f"unexpected {extra[:8]!r}{dup})",
        )
    return zf, {i.filename: i for i in infos}


def _header(
    stream: IO[bytes], rel: str, member: str
) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """Read and check the .npy header; return (shape, fortran_order, dtype, header bytes)."""
    try:
        major, minor = np.lib.format.read_magic(stream)
        if (major, minor) == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                stream, max_header_size=MAX_HEADER_BYTES
            )
        elif (major, minor) == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                stream, max_header_size=MAX_HEADER_BYTES
            )
        else:
            raise ValueError(f".npy format version {major}.{minor} is not accepted")
    except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile) as exc:
        raise _refuse(
            rel,
            f"member {member!r} has no valid .npy header "
            f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})",
        ) from None
    return tuple(int(d) for d in shape), bool(fortran), dtype, stream.tell()


def _check_header(
    spec: TensorSpec,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    bound: dict[str, int],
    rows: int | None,
    rel: str,
) -> int:
    name = spec.name
    if dtype.hasobject or dtype != np.dtype(spec.dtype):
        raise _refuse(
            rel, f"array {name!r} has dtype {dtype.str!r}, the signature says {spec.dtype}"
        )
    want = list(spec.shape)
    if len(shape) != len(want):
        raise _refuse(rel, f"array {name!r} has shape {list(shape)}, the signature says {want}")
    for axis, (got, dim) in enumerate(zip(shape, want)):
        if isinstance(dim, int):
            ok = got == dim
        else:
            ok = got >= 1 and bound.setdefault(dim, got) == got
        if not ok:
            seen = f", {dim!r} = {bound[dim]}" if isinstance(dim, str) and dim in bound else ""
            raise _refuse(
                rel,
                f"array {name!r} has shape {list(shape)}, the signature says "
                f"{want} (axis {axis}{seen})",
            )
    if rows is not None and (not shape or shape[0] != rows):
        raise _refuse(rel, f"array {name!r} has shape {list(shape)}, golden.rows says {rows} rows")
    count = 1
    for d in shape:
        count *= d
    return count * dtype.itemsize


def _walk(
    data: bytes,
    rel: str,
    specs: Sequence[TensorSpec],
    bound: dict[str, int] | None,
    rows: int | None,
    read_data: bool,
) -> dict[str, np.ndarray]:
    bound = {} if bound is None else bound
    out: dict[str, np.ndarray] = {}
    total = 0
    zf, infos = _open(data, rel, specs)
    with zf:
        for spec in specs:
            member = f"{spec.name}.npy"
            info = infos[member]
            try:
                with zf.open(info) as stream:
                    shape, fortran, dtype, head = _header(stream, rel, member)
                    nbytes = _check_header(spec, shape, dtype, bound, rows, rel)
                    total += nbytes
                    if total > MAX_GOLDEN_BYTES:
                        raise _refuse(
                            rel, f"arrays declare {total} bytes, over the cap of {MAX_GOLDEN_BYTES}"
                        )
                    # The zip entry's own size must be the header plus the declared data:
                    # nothing beyond what the manifest allows is ever inflated.
                    if info.file_size != head + nbytes:
                        raise _refuse(
                            rel,
                            f"member {member!r} unpacks to {info.file_size} "
                            f"bytes, its header declares {head + nbytes}",
                        )
                    if read_data:
                        out[spec.name] = _read_array(
                            stream, nbytes, shape, fortran, dtype, rel, member
                        )
            except zipfile.BadZipFile as exc:
                raise _refuse(rel, f"member {member!r} is corrupt ({exc})") from None
    return out


def _read_array(
    stream: IO[bytes],
    nbytes: int,
    shape: tuple[int, ...],
    fortran: bool,
    dtype: np.dtype[Any],
    rel: str,
    member: str,
) -> np.ndarray:
    buf = bytearray(nbytes)
    view = memoryview(buf)
    pos = 0
    while pos < nbytes:
        chunk = stream.read(min(_CHUNK, nbytes - pos))
        if not chunk:
            raise _refuse(rel, f"member {member!r} ends after {pos} of {nbytes} data bytes")
        view[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
    if stream.read(1):
        raise _refuse(rel, f"member {member!r} holds more data than its header declares")
    flat = np.frombuffer(buf, dtype=dtype)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def check_npz(
    data: bytes,
    rel: str,
    specs: Sequence[TensorSpec],
    bound: dict[str, int] | None = None,
    rows: int | None = None,
) -> None:
    """Headers only: member names, dtypes, shapes, declared sizes (nothing is inflated
    beyond each header)."""
    _walk(data, rel, specs, bound, rows, read_data=False)


def read_npz(
    data: bytes,
    rel: str,
    specs: Sequence[TensorSpec],
    bound: dict[str, int] | None = None,
    rows: int | None = None,
) -> dict[str, np.ndarray]:
    """Every listed array, each read only up to the size its checked header declares."""
    return _walk(data, rel, specs, bound, rows, read_data=True)
