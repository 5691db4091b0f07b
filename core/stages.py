"""A report row and a bench row are composed of what each stage writes, one record per stage:

    ArtifactFile        which file: name, format, precision, status, path, sha256, size       (conversion | bench matrix)
    ConversionStage     convert_seconds                                                       (export's converter)
    ParityStage         accuracy, Δ and its CI, McNemar, agreement, KL, per class, flipped   (export's parity)
    LatencyStage        latency_ms, throughput, load, first inference, peak RSS              (export's quick timing | bench)
    TimingStage         how the latency was measured, the speed-up over float32               (export | bench)
    QuantizationStage   per-layer error, how the int8 artifact was chosen                     (export's int8 search)
    ReadinessStage      which phone accelerator takes the file whole                          (export's readiness)
    CostStage           parameters, multiply-adds, peak activation memory                     (static cost)
    OtherRuntimesStage  the same file under another runtime                                   (export --also-backend)
    NpuStage            Vela's NPU placement, cycles and memory per Ethos-U configuration     (bench --npu)

`ParityRow` and `BenchRow` share LatencyStage and CostStage. Every stage but ArtifactFile is keyword-only, so a
row's positional arguments stay its identity (`ParityRow(name, format, precision, ...)`). A stage writes its record into a row with
`row.merge(record)`; `row.part(Stage)` reads one back. The JSON stays one flat object per row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .figures import LatencySettings, NpuMapping, QuantizationRecord, Readiness, RuntimeParity, Speedup, StaticCost
from .record_base import _Record


@dataclass
class ArtifactFile(_Record):
    """Which file a row is about. `name` is the format registry's row, `format` the file format (tflite, onnx, keras,
    saved_model)."""

    name: str
    format: str | None = None
    precision: str | None = None
    status: str = "ok"
    error: str | None = None
    path: str | None = None
    sha256: str | None = None  # of the bytes measured
    size_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(kw_only=True)
class ConversionStage(_Record):
    convert_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class ParityStage(_Record):
    """One artifact against the reference on the same test images (export/parity.py computes every figure)."""

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
    unknown_rejection_rate: float | None = None  # share of test images answered `unknown`
    vs_fake_quant: dict[str, Any] | None = None  # a QAT run: agreement and Δ against its fake-quantized Keras model too
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class LatencyStage(_Record):
    """What one timing measured: shared by a report row (export's quick timing, or a bench of the run) and a
    bench row."""

    latency_ms: dict[str, float] | None = None
    throughput_ips: float | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    peak_rss_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class TimingStage(_Record):
    latency_settings: LatencySettings | None = None
    speedup: Speedup | None = None  # quantized: p50 of the float32 sibling / own p50, same machine and threads
    extra: dict[str, Any] = field(default_factory=dict)

    NESTED: ClassVar[dict[str, type]] = {"latency_settings": LatencySettings, "speedup": Speedup}


@dataclass(kw_only=True)
class QuantizationStage(_Record):
    layers: list[dict] | None = None  # int8: per-layer quantization error, worst first
    quantization: QuantizationRecord | None = None  # int8 under --max-drop: how the shipped artifact was chosen
    extra: dict[str, Any] = field(default_factory=dict)

    NESTED: ClassVar[dict[str, type]] = {"quantization": QuantizationRecord}


@dataclass(kw_only=True)
class ReadinessStage(_Record):
    readiness: Readiness | None = None  # per phone accelerator: does it take the file (export/readiness.py)
    extra: dict[str, Any] = field(default_factory=dict)

    NESTED: ClassVar[dict[str, type]] = {"readiness": Readiness}


@dataclass(kw_only=True)
class CostStage(_Record):
    static_cost: StaticCost | None = None  # parameters, multiply-adds, weight bytes, peak activation memory
    extra: dict[str, Any] = field(default_factory=dict)

    NESTED: ClassVar[dict[str, type]] = {"static_cost": StaticCost}


@dataclass(kw_only=True)
class OtherRuntimesStage(_Record):
    other_runtimes: list[RuntimeParity] | None = None  # the same file under other runtimes, against its own
    extra: dict[str, Any] = field(default_factory=dict)

    LISTS: ClassVar[dict[str, type]] = {"other_runtimes": RuntimeParity}

    def other_runtime(self, backend: str) -> RuntimeParity | None:
        """This file's figures under runtime BACKEND (`tflm`, `openvino`), if it was run there."""
        return next((r for r in self.other_runtimes or [] if r.backend == backend), None)


@dataclass(kw_only=True)
class NpuStage(_Record):
    npu: list[NpuMapping] | None = None  # Vela's estimates per Ethos-U configuration (`bench --npu`)
    extra: dict[str, Any] = field(default_factory=dict)

    LISTS: ClassVar[dict[str, type]] = {"npu": NpuMapping}


def nested_of(*stages: type) -> dict[str, type]:
    return {k: v for stage in stages for k, v in stage.NESTED.items()}


def lists_of(*stages: type) -> dict[str, type]:
    return {k: v for stage in stages for k, v in stage.LISTS.items()}
