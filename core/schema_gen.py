"""The published JSON Schemas of report.json and bench.json, generated from the records that write them: every
field of every record (core/records.py, core/stages.py, core/figures.py) is a property with the type its
annotation says, so a field added to a record is in the schema without another edit. What a type cannot say
(ranges, patterns, which fields an ok row must have, descriptions) is kept in core/schemas/constraints/ and wins
over the generated type. `tests/integrity/test_schemas.py` fails when the published files differ from what this writes.

    python -m edgeship.core.schema_gen          # rewrite core/schemas/{report,bench}.schema.json
"""

from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

from .figures import OpProfile, StaticCost
from .records import BenchRow, ParityReport, ParityRow, Reference, TargetRow, TargetRun

SCHEMA_DIR = Path(__file__).with_name("schemas")
CONSTRAINTS = SCHEMA_DIR / "constraints"
# Where each record's object lives in its schema (JSON pointer parts): the records whose fields are published.
LOCATIONS = {
    "report.schema.json": {(): ParityReport, ("properties", "reference"): Reference,
                           ("$defs", "artifact"): ParityRow, ("properties", "targets", "items"): TargetRun,
                           ("properties", "targets", "items", "properties", "artifacts", "items"): TargetRow,
                           ("$defs", "static_cost"): StaticCost},
    "bench.schema.json": {("$defs", "row"): BenchRow, ("$defs", "static_cost"): StaticCost},
}
REFS = {StaticCost: "#/$defs/static_cost", ParityRow: "#/$defs/artifact"}  # records published once, referred to


def _json_type(annotation) -> dict:
    """The JSON Schema of a field's annotation (None is left out: a record omits unset fields)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [_json_type(a) for a in args if a is not type(None)]
        return options[0] if len(options) == 1 else {"anyOf": options}
    if annotation in REFS:
        return {"$ref": REFS[annotation]}
    if is_dataclass(annotation) or annotation is OpProfile:
        return {"type": "object"}
    simple = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}
    if annotation in simple:
        return {"type": simple[annotation]}
    if origin in (list, tuple):
        item = _json_type(args[0]) if args else {}
        return {"type": "array", **({"items": item} if item else {})}
    if origin is dict:
        return {"type": "object"}
    if hasattr(annotation, "to_json"):  # Readiness: a record without dataclass fields of its own
        return {"type": "object"}
    return {}


def _record_properties(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: _json_type(hints[f.name]) for f in fields(cls) if f.name != "extra"}


def _at(schema: dict, path: tuple) -> dict:
    node = schema
    for part in path:
        node = node.setdefault(part, {})
    return node


def generate(name: str) -> dict:
    """NAME's schema: the constraints file with every record field added as a property (constraints win)."""
    schema = json.loads((CONSTRAINTS / name).read_text(encoding="utf-8"))
    for path, cls in LOCATIONS[name].items():
        node = _at(schema, path)
        node.setdefault("type", "object")
        kept = node.get("properties", {})
        node["properties"] = {**{k: v for k, v in _record_properties(cls).items()}, **kept}
        for key in list(node["properties"]):
            if key not in kept and "$ref" not in node["properties"][key] and not node["properties"][key]:
                del node["properties"][key]
    return schema


def text(name: str) -> str:
    return json.dumps(generate(name), indent=2, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = [name for name in LOCATIONS if (SCHEMA_DIR / name).read_text(encoding="utf-8") != text(name)] \
        if all((SCHEMA_DIR / n).is_file() for n in LOCATIONS) else list(LOCATIONS)
    if check:
        if stale:
            print(f"stale: {', '.join(stale)}; run `python -m edgeship.core.schema_gen`", file=sys.stderr)
        return 1 if stale else 0
    for name in LOCATIONS:
        (SCHEMA_DIR / name).write_text(text(name), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
