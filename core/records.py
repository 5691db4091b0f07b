"""Typed, versioned result records: the parity report, gate verdicts and bench rows, composed of the records each
stage writes (core/stages.py) and the figures inside them (core/figures.py).

Inside the process a report is a `ParityReport` whose nested parts are records too; dicts exist only at the file
boundary, through `to_json()` / `from_json()`. Keys a record does not know (written by a newer edgeship, or by
hand) are kept in `extra` and written back, so files written by the current version and earlier ones still load.
Their JSON Schemas (core/schemas/) are generated from these classes (core/schema_gen.py).

    ParityReport ── reference: Reference
                 └─ artifacts: [ParityRow] = ArtifactFile + Conversion + Parity + Latency + Timing + Quantization
                 │                           + Readiness + Cost + OtherRuntimes + Npu stages
                 └─ targets: [TargetRun] ── artifacts: [TargetRow]  (a ParityRow, plus the drift against the host)
    BenchRow = ArtifactFile + LatencyStage + BenchStage + CostStage
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .figures import (AcceleratorVerdict, LatencySettings, NodeTime, OpProfile, QuantCost, QuantizationRecord,
                      QuantTrial, Readiness, RuntimeParity, Speedup, StaticCost)
from .record_base import _Record, now_utc
from .stages import (ArtifactFile, ConversionStage, CostStage, LatencyStage, NpuStage, OtherRuntimesStage, ParityStage,
                     QuantizationStage, ReadinessStage, TimingStage, lists_of, nested_of)

REPORT_SCHEMA = "edgeship.report/1"
REPORT_SCHEMA_VERSION = 1
BENCH_SCHEMA = "edgeship.bench/1"
BENCH_SCHEMA_VERSION = 1

ROW_STAGES = (NpuStage, OtherRuntimesStage, CostStage, ReadinessStage, QuantizationStage, TimingStage, LatencyStage, ParityStage,
              ConversionStage, ArtifactFile)


@dataclass
class Reference(_Record):
    """The Keras model (or `gate --reference`) that every artifact is measured against, on the same images."""

    accuracy: float | None = None
    n_test: int | None = None
    format: str | None = None
    path: str | None = None
    runtime: str | None = None  # gate --reference: what ran it
    n_skipped: int | None = None
    majority_accuracy: float | None = None
    never_predicted: list[str] | None = None
    n_classes_in_test: int | None = None
    unknown_threshold: float | None = None
    unknown_rejection_rate: float | None = None
    probs_file: str | None = None
    probs_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KEEP_NONE: ClassVar[tuple[str, ...]] = ("unknown_threshold", "unknown_rejection_rate")  # null: no threshold


@dataclass
class ParityRow(*ROW_STAGES):
    """One artifact measured against the Keras reference on the same test images: the records of every stage
    that measured it (core/stages.py), side by side."""

    NESTED: ClassVar[dict[str, type]] = nested_of(*ROW_STAGES)
    LISTS: ClassVar[dict[str, type]] = lists_of(*ROW_STAGES)


@dataclass
class TargetRow(ParityRow):
    """One artifact run on a device by `gate --target`: the parity figures against the host's Keras model, plus
    the bytes that ran there and how the device's answers drift from the same artifact on the host."""

    expected_sha256: str | None = None  # what the bundle says the artifact is; `sha256` is what the target ran
    n_test: int | None = None
    host_agreement: float | None = None
    max_abs_prob_diff_vs_host: float | None = None


@dataclass
class TargetRun(_Record):
    """The on-target gate's record of one device: ok with its artifacts' rows, or failed with the reason."""

    target: str
    status: str = "ok"
    error: str | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    measured_at: str | None = None
    artifacts: list[TargetRow] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    LISTS: ClassVar[dict[str, type]] = {"artifacts": TargetRow}

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class ParityReport(_Record):
    """report.json: what CI gates read. Every figure is bound to the sha256 of the files it describes."""

    labels: list[str]
    reference: Reference
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
    targets: list[TargetRun] = field(default_factory=list)  # `gate --target`: the same artifacts on devices
    fake_quant_reference: dict[str, Any] | None = None  # a QAT run: its fake-quantized model.keras on the test split
    schema: str = REPORT_SCHEMA
    schema_version: int = REPORT_SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    NESTED: ClassVar[dict[str, type]] = {"reference": Reference}
    LISTS: ClassVar[dict[str, type]] = {"artifacts": ParityRow, "targets": TargetRun}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ParityReport":
        report = super().from_json({"labels": [], "reference": {}, **data})
        if not isinstance(report.reference, Reference):
            report.reference = Reference()
        report.artifacts = [row if isinstance(row, ParityRow) else ParityRow.from_json(row)
                            for row in report.artifacts or []]
        return report

    @classmethod
    def of(cls, report: "ParityReport") -> "ParityReport":
        """REPORT, checked to be the typed record (a dict read from report.json goes through `from_json`)."""
        if not isinstance(report, ParityReport):
            raise TypeError(f"expected a ParityReport, got {type(report).__name__}; read a report.json with "
                            f"load_report, or make one with ParityReport.from_json")
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
class BenchRow(LatencyStage, CostStage):
    """One (target, artifact, backend, threads, batch) measurement: its LatencyStage (the same record a report row
    holds) and CostStage beside what only a bench row has. `format` is the file format, `backend` what ran it;
    `provider` the ONNX Runtime execution provider or `gpu` for TensorFlow."""

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
    runs: int | None = None
    accuracy: float | None = None
    accuracy_delta_pp: float | None = None
    pareto: bool | None = None
    baseline_ratio: float | None = None
    regression: bool | None = None
    emulated: bool = False  # measured under an emulator (QEMU user mode): not a timing, kept out of verdicts
    profile: OpProfile | None = None  # `bench --profile`: the time per node and per op type

    NESTED: ClassVar[dict[str, type]] = {**nested_of(CostStage), "profile": OpProfile}

    @property
    def ok(self) -> bool:
        return self.status == "ok"



def read_bench_rows(path) -> list[BenchRow]:
    """The rows of a bench.json (any version that has a 'rows' list); a file that is not one is a UsageError
    naming it."""
    from edgeship.runtime.errors import UsageError
    from edgeship.runtime.fileio import read_json

    data = read_json(path, UsageError, "cannot read bench JSON")
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise UsageError(f"{path}: not an edgeship bench result (no 'rows' list)")
    try:
        return [BenchRow.from_json(r) for r in data["rows"]]
    except TypeError as exc:
        raise UsageError(f"{path}: malformed bench row ({exc})") from exc


__all__ = ["AcceleratorVerdict", "ArtifactFile", "BenchRow", "ConversionStage", "CostStage", "GateVerdict",
           "LatencySettings", "LatencyStage", "NodeTime", "OpProfile", "OtherRuntimesStage", "ParityReport", "ParityRow",
           "ParityStage", "QuantCost", "QuantTrial", "QuantizationRecord", "QuantizationStage", "Readiness",
           "ReadinessStage", "Reference", "RuntimeParity", "Speedup", "StaticCost", "TargetRow", "TargetRun",
           "TimingStage", "asdict", "now_utc"]
