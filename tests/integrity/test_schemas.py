"""The published JSON Schemas (core/schemas/) bite on what a gate must not trust."""

from __future__ import annotations


def test_the_schemas_reject_what_a_gate_must_not_trust():
    """Each schema bites: a report with an out-of-range or missing figure, a bench row without timings, a
    bundle record without its sha256 all fail validation (the demo's real files pass: test_pipeline)."""
    from edgeship.core.schema import schema_errors

    sha = "0" * 64
    report = {"schema": "edgeship.report/1", "schema_version": 1, "created_at": "2026-01-01T00:00:00+00:00",
              "labels": ["a", "b"], "reference": {"accuracy": 0.9, "n_test": 10}, "model_sha256": sha,
              "split_sha256": sha, "info_sha256": sha,
              "artifacts": [{"name": "int8", "status": "ok", "format": "tflite", "precision": "int8", "path": "x",
                             "sha256": sha, "accuracy": 0.9, "accuracy_delta_pp": 0.0, "agreement": 1.0,
                             "max_abs_prob_diff": 0.0, "per_class": []}]}
    assert schema_errors("report", report) == []
    report["artifacts"][0]["agreement"] = 1.5
    del report["artifacts"][0]["sha256"]
    errors = schema_errors("report", report)
    assert any("agreement" in e for e in errors) and any("'sha256' is a required property" in e for e in errors)
    bench = {"schema": "edgeship.bench/1", "schema_version": 1, "created_at": "x", "models": ["m"], "targets": [],
             "settings": {"runs": 1, "warmup": 0, "threads": [None], "batches": [1], "backend": "all"},
             "rows": [{"id": "a", "name": "a", "backend": "tflite", "status": "ok", "target": "local", "batch": 1}]}
    assert any("'latency_ms' is a required property" in e for e in schema_errors("bench", bench))
    bundle = {"schema_version": 1, "labels": ["a", "b\nc"], "task": "multiclass", "provenance": {},
              "input": {"height": 8, "width": 8, "channels": 3, "color": "RGB", "value_range": [0, 255],
                        "resize": "bilinear"},
              "artifacts": [{"name": "t", "file": "t.tflite", "format": "tflite", "precision": "float32",
                             "backend": "tflite", "status": "ok", "size_bytes": 1}]}
    errors = schema_errors("bundle", bundle)
    assert any(e.startswith("labels/1") for e in errors) and any("'sha256' is a required property" in e for e in errors)


def test_the_published_schemas_are_generated_from_the_records():
    """A field added to a record is in report.schema.json / bench.schema.json (regenerate with
    `python -m edgeship.core.schema_gen`); the published files are exactly what the generator writes."""
    from dataclasses import fields

    from edgeship.core import schema_gen
    from edgeship.core.records import BenchRow, ParityRow
    from edgeship.core.schema import load_schema

    assert schema_gen.main(["--check"]) == 0
    for kind, cls, where in (("report", ParityRow, "artifact"), ("bench", BenchRow, "row")):
        published = load_schema(kind)["$defs"][where]["properties"]
        assert {f.name for f in fields(cls)} - {"extra"} <= set(published), kind


def test_a_new_record_field_reaches_the_generated_schema(monkeypatch):
    """The generator reads the records, not a list: a throwaway field appears with its type."""
    import dataclasses

    from edgeship.core import schema_gen
    from edgeship.core.records import ParityRow

    @dataclasses.dataclass
    class Wider(ParityRow):
        watts: float | None = None

    monkeypatch.setitem(schema_gen.LOCATIONS["report.schema.json"], ("$defs", "artifact"), Wider)
    assert schema_gen.generate("report.schema.json")["$defs"]["artifact"]["properties"]["watts"] == {"type": "number"}
