"""Typed, versioned result records: the parity report and its rows, gate verdicts and bench rows.

Each is a dataclass with `to_json()` / `from_json()`. Keys a record does not know (written by a newer
edgeship, or by hand) are kept in `extra` and written back, so files written by the current version and
earlier ones still load. Their JSON shape is published in core/schemas/ (report, bench).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

REPORT_SCHEMA = "edgeship.report/1"
REPORT_SCHEMA_VERSION = 1
BENCH_SCHEMA = "edgeship.bench/1"
BENCH_SCHEMA_VERSION = 1


class _Record:
    """to_json/from_json for a flat dataclass with an `extra` dict (None values are left out)."""

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**self.extra, **{k: _plain(v) for k, v in data.items() if v is not None}}

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})


def _plain(value):
    if isinstance(value, _Record):
        return value.to_json()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass
class ParityRow(_Record):
    """One artifact measured against the Keras reference on the same test images. `name` is the format
    registry's row, `format` the file format (tflite, onnx, keras, saved_model)."""

    name: str
    format: str | None = None
    precision: str | None = None
    status: str = "ok"
    error: str | None = None
    path: str | None = None
    sha256: str | None = None  # of the bytes measured
    size_bytes: int | None = None
    convert_seconds: float | None = None
    runtime: str | None = None
    accuracy: float | None = None
    accuracy_delta_pp: float | None = None
    accuracy_delta_ci95_pp: list[float] | None = None
    mcnemar_p: float | None = None
    agreement: float | None = None
    top5_agreement: float | None = None  # over the images whose top-5 set is defined in both (no tie at 5th/6th)
    top5_defined: float | None = None  # the share of test images where it is
    max_abs_prob_diff: float | None = None
    mean_abs_prob_diff: float | None = None
    kl_divergence: float | None = None
    n_disagree: int | None = None
    flipped: list[dict] | None = None
    per_class: list[dict] | None = None
    diagnosis: list[str] | None = None
    readiness: dict[str, Any] | None = None  # per phone accelerator: does it take the file (export/readiness.py)
    layers: list[dict] | None = None  # int8: per-layer quantization error, worst first
    quantization: dict[str, Any] | None = None  # int8 under --max-drop: how the shipped artifact was chosen
    speedup: dict[str, Any] | None = None  # quantized: p50 of the float32 sibling / own p50, same machine and threads
    latency_ms: dict[str, float] | None = None
    latency_settings: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class ParityReport(_Record):
    """report.json: what CI gates read. Every figure is bound to the sha256 of the files it describes."""

    labels: list[str]
    reference: dict[str, Any]  # format, path, accuracy, n_test, majority_accuracy
    artifacts: list[ParityRow]
    created_at: str | None = None
    bundle: str | None = None
    split_manifest: str | None = None
    split_sha256: str | None = None
    model_sha256: str | None = None
    info_sha256: str | None = None
    dataset: dict[str, Any] = field(default_factory=dict)
    training_curves: str | None = None
    warnings: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)  # images, seconds per step (decode, keras, artifacts)
    targets: list[dict[str, Any]] = field(default_factory=list)  # `gate --target`: the same artifacts on devices
    schema: str = REPORT_SCHEMA
    schema_version: int = REPORT_SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ParityReport":
        report = super().from_json({"labels": [], "reference": {}, **data})
        report.artifacts = [row if isinstance(row, ParityRow) else ParityRow.from_json(row)
                            for row in data.get("artifacts") or []]
        return report


@dataclass
class GateVerdict(_Record):
    artifact: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    n_images: int | None = None  # the images the figures were measured on
    n_skipped: int | None = None  # images of the folder that could not be read, so were not measured
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        counted = (f" (on {self.n_images} images; {self.n_skipped} unreadable image(s) skipped)"
                   if self.n_skipped else "")
        return (f"{'PASS' if self.passed else 'FAIL'} {self.artifact}{counted}"
                + (f": {'; '.join(self.reasons)}" if self.reasons else ""))


@dataclass
class BenchRow(_Record):
    """One (target, artifact, backend, threads, batch) measurement. `format` is the file format, `backend`
    what ran it; `provider` the ONNX Runtime execution provider or `gpu` for TensorFlow."""

    id: str
    name: str
    backend: str
    status: str
    target: str = "local"
    batch: int = 1
    threads: int | None = None
    provider: str | None = None
    model: str | None = None
    path: str | None = None
    format: str | None = None
    precision: str | None = None
    size_bytes: int | None = None
    error: str | None = None
    runtime: str | None = None
    latency_ms: dict[str, float] | None = None
    throughput_ips: float | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    peak_rss_mb: float | None = None
    runs: int | None = None
    accuracy: float | None = None
    accuracy_delta_pp: float | None = None
    pareto: bool | None = None
    baseline_ratio: float | None = None
    regression: bool | None = None
    emulated: bool = False  # measured under an emulator (QEMU user mode): not a timing, kept out of verdicts
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


__all__ = ["ParityRow", "ParityReport", "GateVerdict", "BenchRow", "asdict"]
