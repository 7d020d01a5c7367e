"""The manifest's schema ([schema], [schema-version], [variants]) as code.

Validation is hand-written rather than delegated to a JSON-Schema library so that the
runtime stays dependency-free and every refusal names the field and the rule.
"""

from __future__ import annotations

import re
from typing import Any

from labkit.bundle.paths import check_path
from labkit.bundle.semver import Version
from labkit.errors import FormatError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "signature.sig"  # the one other unlisted file: [signature]
MAX_MANIFEST_BYTES = 1 << 20
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
DTYPES = frozenset({
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool",
})


def tensor_text(dtype: str, shape: Any) -> str:
    """How a tensor's type reads everywhere: ``float32[batch, 64]`` (no quotes)."""
    return f"{dtype}[{', '.join(str(d) for d in shape)}]"


def _fail(field: str, message: str, rule: str = "schema") -> FormatError:
    return FormatError(f"manifest field {field!r}: {message}", rule=rule)


def _require(obj: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise _fail(f"{where}{key}", "is missing")
    value = obj[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise _fail(f"{where}{key}", f"expected {_type_names(types)}, got {type(value).__name__}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in _as_tuple(types))


def _check_tensor(t: Any, where: str) -> None:
    if not isinstance(t, dict):
        raise _fail(where, "must be an object")
    name = _require(t, "name", str, f"{where}.")
    if not name or len(name) > 128:
        raise _fail(f"{where}.name", "must be 1–128 characters")
    dtype = _require(t, "dtype", str, f"{where}.")
    if dtype not in DTYPES:
        raise _fail(f"{where}.dtype", f"{dtype!r} is not one of {sorted(DTYPES)}")
    shape = _require(t, "shape", list, f"{where}.")
    for dim in shape:
        ok_int = isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0
        ok_sym = isinstance(dim, str) and 0 < len(dim) <= 64
        if not (ok_int or ok_sym):
            raise _fail(f"{where}.shape", f"dimension {dim!r} is neither >= 0 nor a name")


def validate(m: Any) -> dict[str, Any]:
    """Check the manifest's structure; return it unchanged when it is valid."""
    if not isinstance(m, dict):
        raise _fail("<root>", "manifest must be a JSON object")
    sv = _require(m, "schema_version", int, "")
    if sv != SCHEMA_VERSION:
        raise _fail("schema_version", f"{sv} is not supported (this reader supports "
                    f"{SCHEMA_VERSION}); upgrade labkit", rule="schema-version")
    name = _require(m, "name", str, "")
    if not NAME_RE.fullmatch(name):
        raise _fail("name", f"{name!r} must match {NAME_RE.pattern}")
    Version.parse(_require(m, "version", str, ""))
    _require(m, "created", str, "")
    _require(m, "task", (str, type(None)), "")
    labels = _require(m, "labels", (list, type(None)), "")
    if labels is not None and not all(isinstance(x, str) for x in labels):
        raise _fail("labels", "must be a list of strings")

    sig = _require(m, "signature", dict, "")
    for side in ("inputs", "outputs"):
        tensors = _require(sig, side, list, "signature.")
        if not tensors:
            raise _fail(f"signature.{side}", "must not be empty")
        names = [t.get("name") if isinstance(t, dict) else None for t in tensors]
        if len(set(map(str, names))) != len(names):
            raise _fail(f"signature.{side}", "tensor names must be unique")
        for i, t in enumerate(tensors):
            _check_tensor(t, f"signature.{side}[{i}]")

    files = _require(m, "files", list, "")
    listed: set[str] = set()
    digests: dict[str, str] = {}
    for i, f in enumerate(files):
        if not isinstance(f, dict):
            raise _fail(f"files[{i}]", "must be an object")
        path = check_path(_require(f, "path", str, f"files[{i}]."))
        if path == MANIFEST_NAME:
            raise _fail(f"files[{i}].path", "manifest.json must not list itself")
        if path in listed:
            raise _fail(f"files[{i}].path", f"{path!r} is listed twice", rule="listing")
        listed.add(path)
        digests[path] = _require(f, "sha256", str, f"files[{i}].")
        if not _HEX64.fullmatch(digests[path]):
            raise _fail(f"files[{i}].sha256", "must be 64 lowercase hex digits")
        size = _require(f, "bytes", int, f"files[{i}].")
        if size < 0:
            raise _fail(f"files[{i}].bytes", "must be >= 0")

    variants = _require(m, "variants", list, "")
    if not variants:
        raise _fail("variants", "must not be empty", rule="variants")
    seen: set[str] = set()
    for i, v in enumerate(variants):
        where = f"variants[{i}]."
        if not isinstance(v, dict):
            raise _fail(f"variants[{i}]", "must be an object")
        vname = _require(v, "name", str, where)
        if not NAME_RE.fullmatch(vname) or vname in seen:
            raise _fail(f"{where}name", f"{vname!r} is not a unique variant name",
                        rule="variants")
        seen.add(vname)
        vfile = check_path(_require(v, "file", str, where))
        if not vfile.startswith("models/") or vfile not in listed:
            raise _fail(f"{where}file", f"{vfile!r} must be a listed file under models/",
                        rule="variants")
        if _require(v, "sha256", str, where) != digests[vfile]:
            raise _fail(f"{where}sha256", f"does not match the files[] entry of {vfile!r}",
                        rule="variants")
        _require(v, "precision", str, where)
        tol = _require(v, "tolerance", dict, where)
        rel = _require(tol, "rel", (int, float), f"{where}tolerance.")
        if not rel > 0:
            raise _fail(f"{where}tolerance.rel", "must be > 0")
        _require(tol, "metric", (str, type(None)), f"{where}tolerance.")
        _require(tol, "min_metric", (int, float, type(None)), f"{where}tolerance.")
    default = _require(m, "default_variant", str, "")
    if default not in seen:
        raise _fail("default_variant", f"{default!r} is not one of {sorted(seen)}",
                    rule="variants")

    golden = _require(m, "golden", dict, "")
    for key in ("inputs", "expected"):
        gpath = check_path(_require(golden, key, str, "golden."))
        if gpath not in listed:
            raise _fail(f"golden.{key}", f"{gpath!r} is not a listed file", rule="golden")
    fp = _require(m, "fingerprint", dict, "")
    for key in ("architecture", "weights", "signature", "metadata"):
        _require(fp, key, str, "fingerprint.")
    _require(m, "provenance", dict, "")
    check_self_digest(m)
    return m


DIGEST_FIELD = "manifest_sha256"


def self_digest(m: dict[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON without its own digest field."""
    import hashlib

    from labkit.bundle._json import dumps_canonical

    body = {k: v for k, v in m.items() if k != DIGEST_FIELD}
    return hashlib.sha256(dumps_canonical(body)).hexdigest()


def check_self_digest(m: dict[str, Any]) -> None:
    """[manifest-digest]: any change to the manifest's content is detected."""
    recorded = m.get(DIGEST_FIELD)
    if not isinstance(recorded, str) or recorded != self_digest(m):
        raise FormatError(f"manifest content does not match its {DIGEST_FIELD}: the manifest "
                          "was modified or corrupted", rule="manifest-digest")


def variant(m: dict[str, Any], name: str | None) -> dict[str, Any]:
    """The variant entry called ``name`` (default variant when None)."""
    wanted = name or m["default_variant"]
    for v in m["variants"]:
        if v["name"] == wanted:
            return dict(v)
    names = ", ".join(v["name"] for v in m["variants"])
    raise FormatError(f"bundle has no variant {wanted!r}; it has: {names}", rule="variants")
