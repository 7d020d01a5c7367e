"""The manifest as a type: :class:`Manifest` is read by :meth:`Manifest.from_json` (the one
strict reader: [json], [schema], [schema-version], [variants], [golden], [manifest-digest])
and written by :meth:`Manifest.to_json` (the one canonical writer).

Validation is hand-written rather than delegated to a JSON-Schema library so that the
runtime stays dependency-free and every refusal names the field and the rule.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.bundle._check import extra, fail, optional, require
from labkit.bundle._json import dumps_canonical, loads_strict
from labkit.bundle.parts import Change, FileEntry, Fingerprint, Golden, Provenance, Variant
from labkit.bundle.semver import Version
from labkit.bundle.speed import Baseline, DefaultRule
from labkit.bundle.tensors import Signature
from labkit.errors import FormatError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "signature.sig"  # the one other unlisted file: [signature-file]
MAX_MANIFEST_BYTES = 1 << 20
#: [variants] at most this many variants: every consumer (verify's self-test, ``handoff
#: tune``, serve) does work per variant, so the count is bounded by the contract, not by
#: whatever a manifest of 1 MiB can list. Real bundles hold a handful.
MAX_VARIANTS = 64
DIGEST_FIELD = "manifest_sha256"
#: [schema] bundle and variant names; the registry and the store check names with it too.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

_KEYS = (
    "schema_version",
    "name",
    "version",
    "created",
    "task",
    "labels",
    "signature",
    "variants",
    "default_variant",
    "fingerprint",
    "golden",
    "change",
    "provenance",
    "baseline",
    "default_rule",
    "files",
    DIGEST_FIELD,
)


def self_digest(m: Mapping[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON without its own digest field."""
    body = {k: v for k, v in m.items() if k != DIGEST_FIELD}
    return hashlib.sha256(dumps_canonical(body)).hexdigest()


def check_self_digest(m: Mapping[str, Any]) -> None:
    """[manifest-digest]: any change to the manifest's content is detected."""
    recorded = m.get(DIGEST_FIELD)
    if not isinstance(recorded, str) or recorded != self_digest(m):
        raise FormatError(
            f"manifest content does not match its {DIGEST_FIELD}: the manifest "
            "was modified or corrupted",
            rule="manifest-digest",
        )


def _check_variant_count(n: int) -> None:
    if n > MAX_VARIANTS:
        raise fail(
            "variants",
            f"{n} variants; a bundle holds at most {MAX_VARIANTS} (docs/bundle-format.md)",
            rule="variants",
        )


@dataclass(frozen=True)
class Manifest:
    """Everything ``manifest.json`` says, checked. Build one, then ``to_json()`` it."""

    name: str
    version: str
    created: str  # UTC ISO-8601
    task: str | None
    labels: tuple[str, ...] | None
    signature: Signature
    variants: tuple[Variant, ...]
    default_variant: str
    fingerprint: Fingerprint
    golden: Golden
    change: Change
    provenance: Provenance
    # How eager was measured and whether the speed-ups are reliable; None: not benchmarked
    # (or written before the field existed). See labkit/bundle/speed.py.
    baseline: Baseline | None = None
    # Why default_variant is the default; None in bundles written before the field existed.
    default_rule: DefaultRule | None = None
    files: tuple[FileEntry, ...] = ()  # filled in by write_bundle
    schema_version: int = SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown top-level fields

    # -- reading ---------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        """Parse manifest bytes strictly; raise FormatError naming the rule broken."""
        raw = loads_strict(data.encode("utf-8") if isinstance(data, str) else data)
        m = cls.from_dict(raw, check_files=True)
        check_self_digest(raw)
        return m

    @classmethod
    def from_dict(cls, raw: Any, *, check_files: bool = True) -> Manifest:
        """Check every field and rule but the self-digest; ``check_files=False`` for a
        draft whose ``files`` are not listed yet."""
        if not isinstance(raw, dict):
            raise fail("<root>", "manifest must be a JSON object")
        m: Mapping[str, Any] = raw
        sv = require(m, "schema_version", int, "")
        if sv != SCHEMA_VERSION:
            raise fail(
                "schema_version",
                f"{sv} is not supported (this reader supports {SCHEMA_VERSION}); upgrade labkit",
                rule="schema-version",
            )
        name = require(m, "name", str, "")
        if not NAME_RE.fullmatch(name):
            raise fail("name", f"{name!r} must match {NAME_RE.pattern}")
        version = require(m, "version", str, "")
        Version.parse(version)
        labels = require(m, "labels", (list, type(None)), "")
        if labels is not None and not all(isinstance(x, str) for x in labels):
            raise fail("labels", "must be a list of strings")
        signature = Signature.from_dict(require(m, "signature", dict, ""))
        files = tuple(
            FileEntry.from_dict(f, f"files[{i}]")
            for i, f in enumerate(require(m, "files", list, ""))
        )
        raw_variants = require(m, "variants", list, "")
        _check_variant_count(len(raw_variants))
        variants = tuple(Variant.from_dict(v, f"variants[{i}]") for i, v in enumerate(raw_variants))
        baseline = optional(m, "baseline", dict, "")
        rule = optional(m, "default_rule", dict, "")
        out = cls(
            name=name,
            version=version,
            created=require(m, "created", str, ""),
            task=require(m, "task", (str, type(None)), ""),
            labels=None if labels is None else tuple(labels),
            signature=signature,
            variants=variants,
            default_variant=require(m, "default_variant", str, ""),
            fingerprint=Fingerprint.from_dict(require(m, "fingerprint", dict, "")),
            golden=Golden.from_dict(require(m, "golden", dict, "")),
            change=Change.from_dict(require(m, "change", dict, "")),
            provenance=Provenance.from_dict(require(m, "provenance", dict, "")),
            baseline=None if baseline is None else Baseline.from_dict(baseline),
            default_rule=None if rule is None else DefaultRule.from_dict(rule),
            files=files,
            schema_version=sv,
            extra=extra(m, _KEYS),
        )
        out.check(files=check_files)
        return out

    def check(self, *, files: bool = True) -> None:
        """The rules that relate fields: [listing], [variants], [golden]."""
        listed: dict[str, str] = {}
        for i, f in enumerate(self.files):
            if f.path == MANIFEST_NAME:
                raise fail(f"files[{i}].path", "manifest.json must not list itself")
            if f.path in listed:
                raise fail(f"files[{i}].path", f"{f.path!r} is listed twice", rule="listing")
            listed[f.path] = f.sha256
        if not self.variants:
            raise fail("variants", "must not be empty", rule="variants")
        _check_variant_count(len(self.variants))
        seen: set[str] = set()
        for i, v in enumerate(self.variants):
            where = f"variants[{i}]."
            if not NAME_RE.fullmatch(v.name) or v.name in seen:
                raise fail(
                    f"{where}name", f"{v.name!r} is not a unique variant name", rule="variants"
                )
            seen.add(v.name)
            if not v.file.startswith("models/") or (files and v.file not in listed):
                raise fail(
                    f"{where}file",
                    f"{v.file!r} must be a listed file under models/",
                    rule="variants",
                )
            if files and v.sha256 != listed[v.file]:
                raise fail(
                    f"{where}sha256",
                    f"does not match the files[] entry of {v.file!r}",
                    rule="variants",
                )
        if self.default_variant not in seen:
            raise fail(
                "default_variant",
                f"{self.default_variant!r} is not one of {sorted(seen)}",
                rule="variants",
            )
        rule = self.default_rule
        if rule is not None:
            if rule.chosen != self.default_variant:
                raise fail(
                    "default_rule.chosen",
                    f"{rule.chosen!r} is not the default_variant {self.default_variant!r}",
                    rule="speed",
                )
            unknown = sorted({rule.incumbent, *rule.scores} - seen)
            if unknown:
                raise fail(
                    "default_rule", f"names variants the bundle lacks: {unknown}", rule="speed"
                )
        for key in ("inputs", "expected"):
            gpath = getattr(self.golden, key)
            if files and gpath not in listed:
                raise fail(f"golden.{key}", f"{gpath!r} is not a listed file", rule="golden")
        src = self.provenance.source
        if files and src is not None and src.copy not in listed:
            raise fail(
                "provenance.source.copy", f"{src.copy!r} is not a listed file", rule="listing"
            )

    # -- writing ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The manifest's JSON object without its self-digest."""
        return {
            **self.extra,
            "schema_version": self.schema_version,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "task": self.task,
            "labels": None if self.labels is None else list(self.labels),
            "signature": self.signature.to_dict(),
            "variants": [v.to_dict() for v in self.variants],
            "default_variant": self.default_variant,
            "fingerprint": self.fingerprint.to_dict(),
            "golden": self.golden.to_dict(),
            "change": self.change.to_dict(),
            "provenance": self.provenance.to_dict(),
            # Absent rather than null when unset: re-writing an older manifest changes nothing.
            **({"baseline": self.baseline.to_dict()} if self.baseline else {}),
            **({"default_rule": self.default_rule.to_dict()} if self.default_rule else {}),
            "files": [f.to_dict() for f in self.files],
        }

    @property
    def digest(self) -> str:
        """The ``manifest_sha256`` that ``to_json`` records."""
        return self_digest(self.to_dict())

    def to_json(self) -> bytes:
        """The canonical bytes of ``manifest.json``, sealed with ``manifest_sha256``."""
        body = self.to_dict()
        return dumps_canonical({**body, DIGEST_FIELD: self_digest(body)})

    # -- questions -------------------------------------------------------------------------
    def variant(self, name: str | None = None) -> Variant:
        """The variant called ``name`` (the default variant when None)."""
        wanted = name or self.default_variant
        for v in self.variants:
            if v.name == wanted:
                return v
        names = ", ".join(v.name for v in self.variants)
        raise FormatError(f"bundle has no variant {wanted!r}; it has: {names}", rule="variants")

    @property
    def title(self) -> str:
        return f"{self.name} {self.version}"
