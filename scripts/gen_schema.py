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

from labkit.bundle.manifest import NAME_RE  # noqa: E402
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
    HandoffRequest, RequestOptions, ProgressEvent, ErrorInfo, HandoffEvent,
    protocol.HelloReply, protocol.ModelsReply, protocol.BundlesReply, protocol.HandoffReply)
# Fields whose JSON key differs from the attribute, and fields merged into their parent's
# JSON ("extra": unknown keys kept for forward compatibility). A stale entry here fails the
# tests that validate real payloads against the schema.
JSON_NAMES: dict[tuple[str, str], str] = {}
MERGED_FIELDS = {"extra"}


def _ref(cls: type) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{cls.__name__}"}


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
        if origin in (list, tuple) or (isinstance(origin, type)
                                       and issubclass(origin, Sequence)):
            return {"type": "array", "items": self.of_type(args[0]) if args else {}}
        if tp in (dict, Mapping) or origin in (dict, Mapping) or (
                isinstance(origin, type) and issubclass(origin, Mapping)):
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
            props[key] = schema
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(key)
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        self.defs[name] = {"type": "object", "description": " ".join(doc.split()),
                           "properties": props, "required": required,
                           "additionalProperties": merged}


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
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://labkit.invalid/schema/labkit.schema.json",
            "title": "labkit contract (generated by scripts/gen_schema.py; do not edit)",
            "x-constants": constants(),
            "$defs": dict(sorted(builder.defs.items()))}


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
    if kind == "object":
        value = schema.get("additionalProperties")
        return f"Record<string, {_ts_type(value) if isinstance(value, dict) else 'unknown'}>"
    return {"string": "string", "integer": "number", "number": "number",
            "boolean": "boolean", "null": "null"}.get(kind or "", "unknown")


def _ts_const(name: str, value: Any) -> str:
    text = json.dumps(value).replace('"', "'")
    if isinstance(value, str) and "'" in value:
        text = json.dumps(value)
    if isinstance(value, list):
        items = ", ".join(json.dumps(v).replace('"', "'") for v in value)
        return f"export const {name} = [{items}] as const;"
    return f"export const {name} = {text};"


def build_ts(schema: dict[str, Any]) -> str:
    lines = ["// Generated by scripts/gen_schema.py from labkit's Python types: do not edit.",
             "// Regenerate with `python scripts/gen_schema.py`; a test checks it is current.",
             "/* eslint-disable */", ""]
    for name, value in schema["x-constants"].items():
        if name == "BUNDLE_NAME_PATTERN":
            lines.append(f"export const BUNDLE_NAME_RE = new RegExp({json.dumps(value)});")
        else:
            lines.append(_ts_const(name, value))
    lines += ["", "export type Stage = (typeof STAGES)[number];",
              "export type StageStatus = (typeof STAGE_STATUSES)[number];",
              "export type RequestType = (typeof REQUEST_TYPES)[number];"]
    for name, d in schema["$defs"].items():
        lines += ["", f"/** {d['description']} */" if d.get("description") else "",
                  f"export interface I{name} {{"]
        for key, prop in d["properties"].items():
            opt = "" if key in d["required"] else "?"
            lines.append(f"  {key}{opt}: {_ts_type(prop)};")
        if d.get("additionalProperties"):
            lines.append("  [key: string]: unknown;")
        lines.append("}")
    return "\n".join(line for i, line in enumerate(lines)
                     if line or (i and lines[i - 1])) + "\n"


def outputs() -> dict[Path, str]:
    schema = build_schema()
    return {SCHEMA_PATH: json.dumps(schema, indent=2) + "\n", TS_PATH: build_ts(schema)}


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
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
