"""The published JSON Schemas of what edgeship writes (core/schemas/*.schema.json): report.json, sweep.json,
bench.json and a bundle's edgeship.json. CI scripts can validate against them; the tests do."""

from __future__ import annotations

import json
from pathlib import Path

from edgeship.runtime.errors import UsageError

SCHEMA_DIR = Path(__file__).with_name("schemas")
SCHEMAS = {"report": "report.schema.json", "bench": "bench.schema.json", "bundle": "edgeship.schema.json",
           "sweep": "sweep.schema.json"}


def load_schema(kind: str) -> dict:
    """The JSON Schema for KIND: report, bench or bundle."""
    return json.loads((SCHEMA_DIR / SCHEMAS[kind]).read_text(encoding="utf-8"))


def schema_errors(kind: str, document: dict) -> list[str]:
    """Every way DOCUMENT breaks KIND's schema, as 'path: message' lines ([] when valid). Needs jsonschema."""
    try:
        import jsonschema
    except ImportError:
        raise UsageError("jsonschema is not installed, so a report cannot be checked before it is trusted; "
                         "pip install jsonschema (edgeship[train] includes it)") from None

    validator = jsonschema.Draft202012Validator(load_schema(kind))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))]
