"""Typed, versioned result records: the parity report and its parts, gate verdicts and bench rows.

Inside the process a report is a `ParityReport` whose nested parts are records too (`Reference`,
`LatencySettings`, `Speedup`, `Readiness`, `QuantizationRecord`); dicts exist only at the file boundary, through
`to_json()` / `from_json()`. Keys a record does not know (written by a newer edgeship, or by hand) are kept in
`extra` and written back, so files written by the current version and earlier ones still load. Their JSON
shape is published in core/schemas/ (report, bench).

    ParityReport ── reference: Reference
                 └─ artifacts: [ParityRow] ── latency_settings: LatencySettings
                                           ├─ speedup: Speedup
                                           ├─ readiness: Readiness ── {accelerator: AcceleratorVerdict}
                                           └─ quantization: QuantizationRecord ── trials: [QuantTrial], cost: QuantCost
                 └─ targets: [TargetRun] ── artifacts: [TargetRow]  (a ParityRow, plus the drift against the host)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, ClassVar

REPORT_SCHEMA = "edgeship.report/1"
REPORT_SCHEMA_VERSION = 1
BENCH_SCHEMA = "edgeship.bench/1"
BENCH_SCHEMA_VERSION = 1


class _Record:
    """to_json/from_json for a dataclass with an `extra` dict (None values are left out). NESTED names the
    fields that hold another record (a JSON object), LISTS those that hold a list of records."""

    NESTED: ClassVar[dict[str, type]] = {}
    LISTS: ClassVar[dict[str, type]] = {}
    KEEP_NONE: ClassVar[tuple[str, ...]] = ()  # written as null: None means something ("threads": the default)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**self.extra, **{k: _plain(v) for k, v in data.items() if v is not None or k in self.KEEP_NONE}}

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: cls._typed(k, v) for k, v in data.items() if k in known}
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    @classmethod
    def _typed(cls, name: str, value):
        """A field's JSON value as its record type (a nested record, or a list of them); others as they are."""
        if name in cls.NESTED and isinstance(value, dict):
            return cls.NESTED[name].from_json(value)
        if name in cls.LISTS and isinstance(value, list):
            return [cls.LISTS[name].from_json(v) if isinstance(v, dict) else v for v in value]
        return value


def _plain(value):
    if isinstance(value, (_Record, Readiness)):
        return value.to_json()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
class LatencySettings(_Record):
    """How a latency figure was measured. Export's quick timing and `edgeship bench` both write it through
    `measured()`, so the two never disagree on its keys."""

    runs: int | None = None
    warmup: int | None = None
    threads: int | None = None
    batch: int = 1
    target: str = "local"
    source: str | None = None  # export | bench
    measured_at: str | None = None
    sha256: str | None = None  # of the artifact timed
    min_seconds: float | None = None
    cpu: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KEEP_NONE: ClassVar[tuple[str, ...]] = ("threads",)

    @classmethod
    def measured(cls, source: str, runs: int, warmup: int, threads: int | None, sha256: str | None,
                 **more) -> "LatencySettings":
        more.setdefault("measured_at", now_utc())
        return cls(runs=runs, warmup=warmup, threads=threads, source=source, sha256=sha256, **more)


@dataclass
class Speedup(_Record):
    """A quantized artifact's p50 against its float32 sibling's, same machine and threads."""

    over: str
    value: float
    p50_ms: float | None = None
    float32_p50_ms: float | None = None
    threads: int | None = None
    source: str | None = None  # export | bench: which timing it comes from
    extra: dict[str, Any] = field(default_factory=dict)

    KEEP_NONE: ClassVar[tuple[str, ...]] = ("threads",)


@dataclass
class StaticCost(_Record):
    """What an artifact costs before it runs, from its graph (core/static_cost.py)."""

    params: int | None = None  # weights and biases of the ops that multiply (BatchNorm folded in)
    macs: int | None = None  # multiply-adds of one image
    weight_bytes: int | None = None  # constant data stored in the file
    peak_activation_bytes: int | None = None  # largest sum of tensors alive at once, ops in stored order
    file_bytes: int | None = None
    method: str | None = None  # what read the graph
    error: str | None = None  # why it could not be read (the other figures of the artifact still stand)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class NodeTime(_Record):
    name: str  # the node (ONNX) or the op's first output tensor (TFLite): the names the diagnosis uses too
    op: str
    ms: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class OpProfile(_Record):
    """Where one artifact's time goes (`edgeship bench --profile`): the time per node in graph order, per op type,
    and beside them the whole model's p50 measured in the same process, so their sum can be checked against it."""

    method: str
    threads: int | None = None
    runs: int | None = None
    p50_ms: float | None = None  # the whole model, same process, same threads
    nodes: list[NodeTime] = field(default_factory=list)
    float_layers_ms: float | None = None  # the nodes `export --max-drop` left in float, and their time
    float_layers: list[str] | None = None
    sha256: str | None = None  # of the bytes profiled: an overlay of these figures must be of the same file
    extra: dict[str, Any] = field(default_factory=dict)

    LISTS: ClassVar[dict[str, type]] = {"nodes": NodeTime}
    KEEP_NONE: ClassVar[tuple[str, ...]] = ("threads",)

    @property
    def total_ms(self) -> float:
        return float(sum(n.ms for n in self.nodes))

    def by_op(self) -> dict[str, float]:
        """ms per op type, largest first."""
        totals: dict[str, float] = {}
        for node in self.nodes:
            totals[node.op] = totals.get(node.op, 0.0) + node.ms
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def top(self, n: int = 10) -> list[NodeTime]:
        return sorted(self.nodes, key=lambda node: -node.ms)[:n]


@dataclass
class RuntimeParity(_Record):
    """The same artifact file under another runtime (OpenVINO), against its own runtime on the same test images."""

    runtime: str
    agreement: float | None = None  # top-1 agreement with the artifact's own runtime
    max_abs_prob_diff: float | None = None
    accuracy: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class AcceleratorVerdict(_Record):
    """Does one phone accelerator take the whole file (TFLite GPU delegate; ONNX Runtime NNAPI / CoreML)?"""

    ready: bool = False
    tool: str | None = None
    ops: int | None = None
    unsupported_ops: list[str] | None = None
    issues: list[str] | None = None
    note: str | None = None
    suitability: str | None = None
    partitions: int | None = None
    nodes: int | None = None
    supported_nodes: int | None = None
    coverage: float | None = None
    needs_fixed_shapes: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def partitioned(self) -> bool:
        """ONNX Runtime's checker counts partitions and coverage; TFLite's Analyzer lists ops."""
        return self.coverage is not None


@dataclass
class Readiness:
    """Per accelerator, its verdict; or the error of a checker that could not run. JSON: {name: {...}} or
    {"error": "..."}, as export/readiness.py has always written it."""

    accelerators: dict[str, AcceleratorVerdict] = field(default_factory=dict)
    error: str | None = None

    @property
    def ready(self) -> bool:
        """Does at least one accelerator take the whole artifact?"""
        return self.error is None and any(v.ready is True for v in self.accelerators.values())

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        return {name: verdict.to_json() for name, verdict in self.accelerators.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Readiness":
        if "error" in data:
            return cls(error=str(data["error"]))
        return cls({name: AcceleratorVerdict.from_json(v) for name, v in data.items() if isinstance(v, dict)})


@dataclass
class QuantTrial(_Record):
    """One int8 variant the --max-drop search measured on the validation split."""

    label: str = ""
    calibration: str | None = None
    float_layers: list[str] = field(default_factory=list)
    val_accuracy: float | None = None
    val_drop_pp: float | None = None
    val_agreement: float | None = None
    p50_ms: float | None = None
    meets_budget: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuantCost(_Record):
    """What the chosen variant costs in latency here (1 thread) against plain int8 and float32."""

    p50_ms: float | None = None
    plain_int8_p50_ms: float | None = None
    vs_plain_int8: float | None = None
    float32_p50_ms: float | None = None
    vs_float32: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuantizationRecord(_Record):
    """How the shipped int8 artifact was chosen under `export --max-drop`: the budget, every trial, the pick."""

    budget_pp: float
    calibration: str | None = None
    float_layers: list[str] = field(default_factory=list)
    trials: list[QuantTrial] = field(default_factory=list)
    split: str | None = None
    n_images: int | None = None
    reference_val_accuracy: float | None = None
    chosen: str | None = None
    chosen_trial: int | None = None  # labels may repeat (two different 3-node float sets)
    met_budget: bool = False
    min_agreement: float | None = None  # the top-1 agreement every trial was held to (older reports lack it)
    cost: QuantCost | None = None
    equalized_pairs: list[str] | None = None  # cross-layer equalization: "bn0 → conv1 (scales …)" per pair
    equalization_skipped: list[str] | None = None  # pairs behind a layer that does not commute with a scale
    bias_corrected_layers: list[str] | None = None  # empirical bias correction: "conv1 → bn1 (|shift| up to …)"
    bias_correction_skipped: list[str] | None = None  # convolutions with nowhere to put a correction
    extra: dict[str, Any] = field(default_factory=dict)

    NESTED: ClassVar[dict[str, type]] = {"cost": QuantCost}
    LISTS: ClassVar[dict[str, type]] = {"trials": QuantTrial}


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
    readiness: Readiness | None = None  # per phone accelerator: does it take the file (export/readiness.py)
    layers: list[dict] | None = None  # int8: per-layer quantization error, worst first
    quantization: QuantizationRecord | None = None  # int8 under --max-drop: how the shipped artifact was chosen
    speedup: Speedup | None = None  # quantized: p50 of the float32 sibling / own p50, same machine and threads
    latency_ms: dict[str, float] | None = None
    latency_settings: LatencySettings | None = None
    static_cost: StaticCost | None = None  # parameters, multiply-adds, weight bytes, peak activation memory
    other_runtimes: list[RuntimeParity] | None = None  # the same file under OpenVINO, against its own runtime
    throughput_ips: float | None = None  # from `edgeship bench`, with load_ms, first_inference_ms, peak_rss_mb
    load_ms: float | None = None
    first_inference_ms: float | None = None
    peak_rss_mb: float | None = None
    unknown_rejection_rate: float | None = None  # share of test images answered `unknown`
    extra: dict[str, Any] = field(default_factory=dict)

    NESTED: ClassVar[dict[str, type]] = {"latency_settings": LatencySettings, "speedup": Speedup,
                                         "readiness": Readiness, "quantization": QuantizationRecord,
                                         "static_cost": StaticCost}
    LISTS: ClassVar[dict[str, type]] = {"other_runtimes": RuntimeParity}

    @property
    def ok(self) -> bool:
        return self.status == "ok"


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
    static_cost: StaticCost | None = None  # of the artifact file, read on the host (core/static_cost.py)
    profile: OpProfile | None = None  # `bench --profile`: the time per node and per op type
    extra: dict[str, Any] = field(default_factory=dict)

    NESTED: ClassVar[dict[str, type]] = {"static_cost": StaticCost, "profile": OpProfile}

    @property
    def ok(self) -> bool:
        return self.status == "ok"


__all__ = ["AcceleratorVerdict", "BenchRow", "GateVerdict", "LatencySettings", "ParityReport", "ParityRow",
           "QuantCost", "QuantTrial", "QuantizationRecord", "NodeTime", "OpProfile", "Readiness", "Reference", "RuntimeParity", "Speedup", "StaticCost", "TargetRow",
           "TargetRun", "asdict", "now_utc"]


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
