"""Write the JSON Schema of labkit's contract types and the extension's TypeScript copy.

    python scripts/gen_schema.py           # rewrite schema/labkit.schema.json and
                                           # extension/src/generated/contract.ts
    python scripts/gen_schema.py --check   # exit 1 if either is stale (tests run this)

The Python types are the one source: the frozen dataclasses of ``labkit.request`` (what the
Handoff button sends and hears back) and of ``labkit.bundle`` (the manifest), the comm
protocol's constants, the stage list and the bundle-name rule. The TypeScript file holds the
constants and one interface per schema definition, so the compiler refuses a UI that reads a
field Python does not write; jest validates real payloads against the schema.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "schema" / "labkit.schema.json"
TS_PATH = ROOT / "extension" / "src" / "generated" / "contract.ts"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from labkit.bundle import Baseline, DefaultRule, Exporter, Manifest, Variant  # noqa: E402
from labkit.bundle.checks import JUDGED_ON  # noqa: E402
from labkit.bundle.manifest import MAX_VARIANTS, NAME_RE  # noqa: E402
from labkit.bundle.parts import CHANGE_KINDS  # noqa: E402
from labkit.bundle.tensors import DTYPES  # noqa: E402
from labkit.bundle.tolerance import METRICS  # noqa: E402
from labkit.notebook import protocol  # noqa: E402
from labkit.request import (  # noqa: E402
    STAGE_STATUSES,
    STAGES,
    ErrorInfo,
    HandoffEvent,
    HandoffRequest,
    ProgressEvent,
    RequestOptions,
)

ROOTS: tuple[type, ...] = (
    Manifest,
    HandoffRequest,
    RequestOptions,
    ProgressEvent,
    ErrorInfo,
    HandoffEvent,
    protocol.HelloReply,
    protocol.ModelsReply,
    protocol.BundlesReply,
    protocol.HandoffReply,
)
# What the type hints do not say, each imported from its home rather than copied: JSON keys
# that differ from the attribute, closed sets of values checked by the readers, and dict
# fields that carry a HandoffResult. A wrong entry fails the tests that validate real
# payloads (a written manifest, a handoff's result) against the schema.
JSON_NAMES: dict[tuple[str, str], str] = {
    ("FileEntry", "size"): "bytes",
    ("Change", "previous"): "from",
}
ENUMS: dict[tuple[str, str], list[Any]] = {
    ("Change", "kind"): list(CHANGE_KINDS),
    ("TensorSpec", "dtype"): sorted(DTYPES),
    ("Tolerance", "metric"): [*METRICS, None],
    ("EngineCheck", "judged_on"): list(JUDGED_ON),
    ("Quantization", "judged_on"): [*JUDGED_ON, None],
}
# Bounds on arrays the readers enforce ([variants]).
MAX_ITEMS: dict[tuple[str, str], int] = {("Manifest", "variants"): MAX_VARIANTS}
RESULT_FIELDS = {("HandoffEvent", "result"), ("HandoffReply", "result")}
# Unknown keys kept for forward compatibility, merged into the parent object's JSON.
MERGED_FIELDS = {"extra"}
NO_CHANGE = "none"  # a handoff that wrote nothing (labkit.bundle.store.Plan.kind)
OPTIONAL_RESULT_FIELDS = {"signed_by", "baseline", "default_rule", "stage_seconds"}


def _ref(cls: type) -> dict[str, Any]:
    return _ref_name(cls.__name__)


def _ref_name(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


class SchemaBuilder:
    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}

    def of_type(self, tp: Any) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any or tp is object:
            return {}
        if tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if origin in (typing.Union, types.UnionType):
            options = [self.of_type(a) for a in args]
            return options[0] if len(options) == 1 else {"anyOf": options}
        if origin in (list, tuple) or (isinstance(origin, type) and issubclass(origin, Sequence)):
            return {"type": "array", "items": self.of_type(args[0]) if args else {}}
        if (
            tp in (dict, Mapping)
            or origin in (dict, Mapping)
            or (isinstance(origin, type) and issubclass(origin, Mapping))
        ):
            value = self.of_type(args[1]) if len(args) == 2 else {}
            return {"type": "object", **({"additionalProperties": value} if value else {})}
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            self.define(tp)
            return _ref(tp)
        raise TypeError(f"no JSON Schema for {tp!r}: add it to scripts/gen_schema.py")

    def define(self, cls: type) -> None:
        name = cls.__name__
        if name in self.defs:
            return
        self.defs[name] = {}  # placeholder: recursive types
        hints = typing.get_type_hints(cls)
        props: dict[str, Any] = {}
        required: list[str] = []
        merged = False
        for f in dataclasses.fields(cls):
            if f.name in MERGED_FIELDS:
                merged = True
                continue
            key = JSON_NAMES.get((name, f.name), f.name)
            schema = self.of_type(hints[f.name])
            if "enum" in f.metadata:
                schema = {"enum": list(f.metadata["enum"])}
            elif (name, f.name) in ENUMS:
                schema = {"enum": ENUMS[(name, f.name)]}
            elif (name, f.name) in RESULT_FIELDS:
                self.define_result()
                schema = (
                    {"anyOf": [_ref_name("HandoffResult"), {"type": "null"}]}
                    if f.default is None
                    else _ref_name("HandoffResult")
                )
            if (name, f.name) in MAX_ITEMS:
                schema = {**schema, "maxItems": MAX_ITEMS[(name, f.name)]}
            props[key] = schema
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(key)
        # dataclasses without a docstring get a generated "Name(field: type, …)" one
        doc = (
            ""
            if (cls.__doc__ or "").startswith(f"{name}(")
            else ((cls.__doc__ or "").strip().split("\n\n")[0])
        )
        self.defs[name] = {
            "type": "object",
            "description": " ".join(doc.split()),
            "properties": props,
            "required": required,
            "additionalProperties": merged,
        }

    def define_result(self) -> None:
        """``HandoffResult.to_dict()``: the manifest's facts, how the store placed them and
        the variants with their speed-up (``labkit/pipeline/result.py``)."""
        if "HandoffResult" in self.defs:
            return
        self.define(Manifest)
        manifest = self.defs["Manifest"]["properties"]
        variant = dict(self.defs[Variant.__name__])
        number = {"type": "number"}
        speedup = {
            "type": "object",
            "properties": {"p50": number, "throughput": number},
            "required": ["p50", "throughput"],
            "additionalProperties": False,
        }
        self.defs["ResultVariant"] = {
            **variant,
            "description": "A variant as a handoff result lists it: the "
            "manifest's variant and its speed-up against PyTorch eager (null: not timed).",
            "properties": {
                **variant["properties"],
                "speedup": {"anyOf": [speedup, {"type": "null"}]},
            },
            "required": [*variant["required"], "speedup"],
        }
        self.define(Exporter)
        self.define(Baseline)
        self.define(DefaultRule)
        text = {"type": "string"}
        props = {
            "name": manifest["name"],
            "version": manifest["version"],
            "path": text,
            "change": {"enum": [*CHANGE_KINDS, NO_CHANGE]},
            "change_reason": text,
            "previous": {"anyOf": [text, {"type": "null"}]},
            "default_variant": manifest["default_variant"],
            "variants": {"type": "array", "items": _ref_name("ResultVariant")},
            "rejected": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": text, "reason": text},
                    "required": ["name", "reason"],
                },
            },
            "parity": {"type": "object"},
            "benchmark": {"anyOf": [{"type": "object"}, {"type": "null"}]},
            "exporter": _ref(Exporter),
            # fingerprint (sha256 of the PEM public key) of the key that signed the bundle;
            # optional, so results recorded before signing existed still validate
            "signed_by": {"anyOf": [text, {"type": "null"}]},
            # the manifest's baseline and default_rule, and each stage's wall seconds; optional
            # like signed_by (results recorded before they existed), null when not recorded
            "baseline": {"anyOf": [_ref(Baseline), {"type": "null"}]},
            "default_rule": {"anyOf": [_ref(DefaultRule), {"type": "null"}]},
            "stage_seconds": {
                "anyOf": [{"type": "object", "additionalProperties": number}, {"type": "null"}]
            },
        }
        self.defs["HandoffResult"] = {
            "type": "object",
            "description": "What a handoff returns "
            "(HandoffResult.to_dict()): the version written or found identical, and why.",
            "properties": props,
            "required": [k for k in props if k not in OPTIONAL_RESULT_FIELDS],
            "additionalProperties": False,
        }


def constants() -> dict[str, Any]:
    return {
        "PROTOCOL_VERSION": protocol.PROTOCOL_VERSION,
        "COMM_TARGET": protocol.TARGET,
        "REQUEST_TYPES": list(protocol.REQUEST_TYPES),
        "STAGES": list(STAGES),
        "STAGE_STATUSES": list(STAGE_STATUSES),
        "BUNDLE_NAME_PATTERN": f"^(?:{NAME_RE.pattern})$",
    }


def build_schema() -> dict[str, Any]:
    builder = SchemaBuilder()
    for cls in ROOTS:
        builder.define(cls)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://labkit.invalid/schema/labkit.schema.json",
        "title": "labkit contract (generated by scripts/gen_schema.py; do not edit)",
        "x-constants": constants(),
        "$defs": dict(sorted(builder.defs.items())),
    }


# --- TypeScript -----------------------------------------------------------------------------


def _ts_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return "I" + schema["$ref"].rsplit("/", 1)[1]
    if "enum" in schema:
        return " | ".join(json.dumps(v).replace('"', "'") for v in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_ts_type(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        inner = _ts_type(schema.get("items", {}))
        return f"({inner})[]" if "|" in inner else f"{inner}[]"
    if kind == "object" and "properties" in schema:
        req = schema.get("required", [])
        inner = "; ".join(
            f"{k}{'' if k in req else '?'}: {_ts_type(v)}" for k, v in schema["properties"].items()
        )
        return f"{{ {inner} }}"
    if kind == "object":
        value = schema.get("additionalProperties")
        return f"Record<string, {_ts_type(value) if isinstance(value, dict) else 'unknown'}>"
    return {
        "string": "string",
        "integer": "number",
        "number": "number",
        "boolean": "boolean",
        "null": "null",
    }.get(kind or "", "unknown")


def _ts_const(name: str, value: Any) -> str:
    text = json.dumps(value).replace('"', "'")
    if isinstance(value, str) and "'" in value:
        text = json.dumps(value)
    if isinstance(value, list):
        items = ", ".join(json.dumps(v).replace('"', "'") for v in value)
        return f"export const {name} = [{items}] as const;"
    return f"export const {name} = {text};"


def build_ts(schema: dict[str, Any]) -> str:
    lines = [
        "// Generated by scripts/gen_schema.py from labkit's Python types: do not edit.",
        "// Regenerate with `python scripts/gen_schema.py`; a test checks it is current.",
        "/* eslint-disable */",
        "",
    ]
    for name, value in schema["x-constants"].items():
        if name == "BUNDLE_NAME_PATTERN":
            lines.append(f"export const BUNDLE_NAME_RE = new RegExp({json.dumps(value)});")
        else:
            lines.append(_ts_const(name, value))
    lines += [
        "",
        "export type Stage = (typeof STAGES)[number];",
        "export type StageStatus = (typeof STAGE_STATUSES)[number];",
        "export type RequestType = (typeof REQUEST_TYPES)[number];",
    ]
    for name, d in schema["$defs"].items():
        lines += [
            "",
            f"/** {d['description']} */" if d.get("description") else "",
            f"export interface I{name} {{",
        ]
        for key, prop in d["properties"].items():
            opt = "" if key in d["required"] else "?"
            lines.append(f"  {key}{opt}: {_ts_type(prop)};")
        if d.get("additionalProperties"):
            lines.append("  [key: string]: unknown;")
        lines.append("}")
    return "\n".join(line for i, line in enumerate(lines) if line or (i and lines[i - 1])) + "\n"


FIXTURES = ROOT / "extension" / "src" / "__tests__" / "fixtures"


def real_payloads(tmp: Path) -> dict[str, Any]:
    """What Python really sends, from three real handoffs of a tiny classifier through the
    button's runner: a first version, a retrain (minor) and the same model again (none),
    plus the first bundle's manifest.json. Tests validate these against the schema."""
    import torch

    import labkit
    from labkit.pipeline.runner import run_request
    from labkit.request import HandoffRequest, RequestOptions

    def train(seed: int) -> Any:
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))

    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(1))
    request = HandoffRequest(store=str(tmp / "store"), options=RequestOptions(quick=True))
    out: dict[str, Any] = {}
    for label, seed in (("first", 0), ("minor", 1), ("none", 1)):
        spec = labkit.register(
            train(seed), x[:4], name="tiny", task="classification", parity_inputs=[x]
        )
        events: list[HandoffEvent] = []
        run_request(request, events.append, specs={"tiny": spec}, cwd=tmp)
        out[f"event-{label}"] = events[-1].to_dict()
        out[f"progress-{label}"] = [e.to_dict() for e in events[:-1]]
    out["manifest"] = json.loads((tmp / "store" / "tiny" / "1.0.0" / "manifest.json").read_text())
    out["figure-first"] = speed_json(out["event-first"]["result"])
    return json.loads(json.dumps(out).replace(str(tmp), "/home/user/labkit"))


def speed_json(result: dict[str, Any]) -> dict[str, Any]:
    """The speed chart the kernel sends with a handoff's reply (``HandoffReply.figure``), for
    the extension's chart tests."""
    from labkit.notebook.charts import figure_json, speed_figure

    return figure_json(speed_figure(result))


def write_fixtures() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        payloads = real_payloads(Path(tmp))
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, payload in payloads.items():
        (FIXTURES / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {_shown(FIXTURES / name)}.json")


def outputs() -> dict[Path, str]:
    schema = build_schema()
    return {SCHEMA_PATH: json.dumps(schema, indent=2) + "\n", TS_PATH: build_ts(schema)}


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    parser.add_argument(
        "--fixtures",
        action="store_true",
        help="also write real payloads for the extension's tests (runs three tiny handoffs)",
    )
    args = parser.parse_args(argv)
    if args.fixtures:
        write_fixtures()
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.is_file() else None
        if current == text:
            continue
        if args.check:
            stale.append(_shown(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {_shown(path)}")
    if stale:
        print(f"stale: {', '.join(stale)}; run: python scripts/gen_schema.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
