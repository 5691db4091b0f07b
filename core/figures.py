"""The figures inside a report row or a bench row, each a record of its own: how a latency was measured, the
speed-up over float32, static cost, an op profile, the same file under another runtime, accelerator readiness,
and how an int8 artifact was chosen under `--max-drop`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .record_base import _Record, now_utc


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
    """The same artifact file under another runtime (OpenVINO, TensorFlow Lite Micro), against its own runtime on
    the same test images; or why that runtime would not run it."""

    runtime: str
    agreement: float | None = None  # top-1 agreement with the artifact's own runtime
    max_abs_prob_diff: float | None = None
    accuracy: float | None = None
    backend: str | None = None  # the registry name of that runtime (runtime.backends.BACKENDS)
    arena_bytes: int | None = None  # the memory it allocated for the model, where it says (TFLM's tensor arena)
    flash_bytes: int | None = None  # what a microcontroller stores: the file plus the runtime's code (an allowance)
    io_bytes: int | None = None  # the input and output buffers, inside the arena
    error: str | None = None  # it would not run the file: its own reason (an op it lacks, and which)
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
    speedup_vs_float32: float | None = None  # the float32 file's p50 here / this trial's, same run and threads
    seconds: float | None = None  # making and measuring this trial (quantization-aware training's fine-tuning too)
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
    quantization_aware: dict[str, Any] | None = None  # the last rung's fine-tuning (core.qat.QatOutcome), when run
    extra: dict[str, Any] = field(default_factory=dict)

    NESTED: ClassVar[dict[str, type]] = {"cost": QuantCost}
    LISTS: ClassVar[dict[str, type]] = {"trials": QuantTrial}


@dataclass
class NpuOperator(_Record):
    """One operator as Vela placed it: on the NPU with its cycles, or on the CPU with Vela's reason."""

    op: str  # the TFLite operator (Conv2D, Softmax, ...)
    target: str  # NPU | CPU
    name: str | None = None  # its output tensor: the name the diagnosis and the explorer use
    kernel: str | None = None  # what Vela lowered it to (a Softmax becomes several NPU operations)
    cycles: int | None = None
    macs: int | None = None
    reason: str | None = None  # why Vela left it on the CPU, in Vela's words
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class NpuMapping(_Record):
    """An int8 .tflite compiled by Vela for one Ethos-U configuration: estimates, never measured latency."""

    config: str  # ethos-u55-128, ethos-u65-256, ...
    estimated: bool = True
    system_config: str | None = None
    memory_mode: str | None = None
    clock_hz: float | None = None
    cycles: int | None = None
    estimated_ms: float | None = None  # cycles at the configuration's clock
    npu_ops: int | None = None
    cpu_ops: int | None = None
    npu_mac_share: float | None = None
    sram_bytes: int | None = None
    flash_bytes: int | None = None  # where the memory mode keeps weights in flash (Ethos-U55's default)
    dram_bytes: int | None = None  # where it keeps them in DRAM (Ethos-U65's default: Dedicated_Sram)
    vela: str | None = None  # the compiler's version
    error: str | None = None
    file: str | None = None  # Vela's optimized .tflite, relative to the run (it runs on the board's TFLM with the
    sha256: str | None = None  # Ethos-U custom op; its parity is that of the artifact it was compiled from)
    operators: list[NpuOperator] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    LISTS: ClassVar[dict[str, type]] = {"operators": NpuOperator}

    @property
    def cpu_operators(self) -> list[NpuOperator]:
        return [o for o in self.operators if o.target != "NPU"]
