"""The gate's thresholds as a registry: one `GateCheck` object carries a threshold's flag, its config key, its
unit, its default, the words the gate prints for it and its evaluation. `edgeship gate`'s flags, the
`[tool.edgeship.gate]` keys, `GateThresholds` and the verdicts are all read from `GATE_CHECKS`, so a new
threshold is `register_check(GateCheck(...))` and nothing else (tests/gate/test_gate.py registers a throwaway one)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from edgeship.core.formats import device_file_formats
from edgeship.core.integrity import finite
from edgeship.core.metrics import describe_collapse, predictions_collapsed
from edgeship.core.records import ParityRow, Readiness, Reference, Speedup
from edgeship.runtime.errors import UsageError

UNITS = ("pp", "share", "fraction", "factor", "bytes", "name", "switch")  # how a value is written and checked (the CLI's types)


@dataclass(frozen=True)
class GateCheck:
    """One threshold. `row(value, row, reference)` and `reference(value, reference)` return why they fail
    (empty: pass); either may be None. An unset value (None, or False for a switch) is not evaluated."""

    name: str  # GateThresholds' attribute and the Python keyword: max_drop_pp
    key: str  # the [tool.edgeship.gate] key and, as --max-drop, the flag
    unit: str  # one of UNITS
    default: object  # None (or False): off unless asked for
    help: str
    describe: Callable[[object], str]  # the threshold as the gate understood it: "accuracy may drop 1 pp"
    row: Callable | None = None
    reference: Callable | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def check_value(self, value) -> None:
        """Refuse a value that would switch the check off by accident (true, inf, NaN) or cannot mean anything."""
        if value is None:
            return
        if self.unit == "switch":
            if not isinstance(value, bool):
                raise UsageError(f"{self.key} must be true or false, got {value!r}")
            return
        if self.unit == "name":
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"{self.key} ({self.flag}) must be a name, got {value!r}")
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UsageError(f"gate threshold {self.key} ({self.flag}) must be a finite number, got {value!r}")
        if self.unit in ("share", "fraction") and not 0.0 <= value <= 1.0:
            raise UsageError(f"{self.flag} must be a fraction in [0, 1], got {value}")
        if self.unit in ("factor", "bytes") and not value > 0:
            raise UsageError(f"{self.flag} must be a positive factor, e.g. 1.5, got {value!r}")


GATE_CHECKS: dict[str, GateCheck] = {}


def register_check(check: GateCheck, replace: bool = False) -> GateCheck:
    """Add CHECK to the gate (flags, config keys, thresholds and verdicts see it from then on)."""
    if check.unit not in UNITS:
        raise UsageError(f"gate check {check.key!r}: unit must be one of {', '.join(UNITS)}, got {check.unit!r}")
    if not replace and (check.name in GATE_CHECKS or any(c.key == check.key for c in GATE_CHECKS.values())):
        raise UsageError(f"gate check {check.key!r} is already registered")
    GATE_CHECKS[check.name] = check
    return check


def unregister_check(name: str) -> None:
    GATE_CHECKS.pop(name, None)


def checks_by_key() -> dict[str, GateCheck]:
    return {check.key: check for check in GATE_CHECKS.values()}


# --min-speedup is for quantization that is meant to buy speed; float16 halves the file and is often no faster
SPEED_PRECISIONS = ("int8", "dynamic-int8")


def _drop(value, row: ParityRow, reference):
    delta = float(row.accuracy_delta_pp)
    return [f"accuracy dropped {-delta:.2f} pp (allowed {value:g} pp)"] if delta < -value else []


def _agreement(value, row: ParityRow, reference):
    """Top-1 agreement with the Keras model the file was converted from: for a quantization-aware run's files that
    is the fake-quantized model (its fine-tune may change answers the float model gave; `--max-drop` judges that)."""
    if row.vs_fake_quant and row.vs_fake_quant.get("agreement") is not None:
        agreement = float(row.vs_fake_quant["agreement"])
        return [f"top-1 agreement with the fake-quantized model {agreement:.4f} < {value:g}"] if agreement < value else []
    agreement = float(row.agreement)
    return [f"top-1 agreement {agreement:.4f} < {value:g}"] if agreement < value else []


def _floor(value, row: ParityRow, reference):
    accuracy = float(row.accuracy)
    return [f"accuracy {accuracy:.2%} below the floor {value:.2%}"] if accuracy < value else []


def _reference_floor(value, reference: Reference):
    accuracy = reference.accuracy
    if accuracy is None or (finite(accuracy) and accuracy >= value):
        return []
    shown = format(accuracy, ".2%") if finite(accuracy) else accuracy
    return [f"reference accuracy {shown} below the floor {value:.2%}"]


def _class_drop(value, row: ParityRow, reference):
    classes = row.per_class
    if not isinstance(classes, list) or not all(isinstance(c, dict) and finite(c.get("delta_pp")) for c in classes):
        return ["per-class figures missing or not finite in the report"]
    worst = [c for c in classes if c["delta_pp"] < -value]
    if not worst:
        return []
    shown = ", ".join(f"{c['class']} {-c['delta_pp']:.1f} pp" for c in worst[:3])
    return [f"class accuracy dropped: {shown} (allowed {value:g} pp per class)"]


def _prob_diff(value, row: ParityRow, reference):
    diff = row.max_abs_prob_diff
    if not finite(diff):
        return ["max |Δp| missing or not finite in the report"]
    return [f"max |Δp| {diff:.4f} > {value:g}"] if diff > value else []


def _speedup(value, row: ParityRow, reference):
    """A quantized artifact that is not enough faster than its float32 sibling here."""
    if row.format not in device_file_formats() or row.precision not in SPEED_PRECISIONS:
        return []
    speedup = row.speedup
    figure = speedup.value if isinstance(speedup, Speedup) else None
    if not finite(figure):
        return ["no speed-up figure over float32 in the report (export both, or `edgeship bench` the run)"]
    if figure >= value:
        return []
    how = f"only {figure:.2f}× faster" if figure >= 1 else f"{1 / figure:.1f}× slower"
    return [f"{how} than {speedup.over or 'float32'} here (wanted {value:g}× faster; "
            f"{speedup.threads or 'default'} thread(s), from {speedup.source or '?'})"]


def _gpu_delegate(value, row: ParityRow, reference):
    """Why no accelerator takes the artifact whole (it would fall back to the CPU)."""
    if row.format not in device_file_formats():
        return []
    entry = row.readiness
    if not isinstance(entry, Readiness) or not (entry.accelerators or entry.error):
        return ["no device-readiness figures in the report; re-run `edgeship export`"]
    if entry.error is not None:
        return [f"device readiness could not be checked: {entry.error}"]
    if entry.ready:
        return []
    worst = [f"{name} {v.partitions} partition(s) over {v.coverage:.0%} of nodes" if v.partitioned
             else f"{name}: {'; '.join(v.issues or ['not ready'])}" for name, v in entry.accelerators.items()]
    return ["no phone accelerator takes it whole, it would fall back to the CPU (" + "; ".join(worst) + ")"]


def _tflm_row(row: ParityRow):
    """The row's TensorFlow Lite Micro figures, or why there are none ([] for a file TFLM does not read)."""
    if row.format != "tflite":
        return []
    tflm = row.other_runtime("tflm")
    if tflm is None:
        return ["no TensorFlow Lite Micro figures in the report; export with --also-backend tflm (edgeship[mcu])"]
    return [tflm.error] if tflm.error else tflm


def _tflm_bytes(attribute: str, what: str):
    """A check that fails a .tflite whose TensorFlow Lite Micro figure ATTRIBUTE (bytes) exceeds the threshold:
    the arena TFLM allocated, or the file plus its code allowance."""
    def check(value, row: ParityRow, reference):
        tflm = _tflm_row(row)
        if isinstance(tflm, list):
            return tflm
        figure = getattr(tflm, attribute)
        if not finite(figure):
            return [f"no {what} figure for TensorFlow Lite Micro in the report; export with --also-backend tflm again"]
        return [f"{what} {figure:,} bytes > {value:,.0f}"] if figure > value else []
    return check


def _npu(value, row: ParityRow, reference):
    """An int8 .tflite that Vela does not map wholly onto Ethos-U configuration VALUE: one reason per operator left
    on the CPU, in Vela's words."""
    if row.format != "tflite" or row.precision != "int8":
        return []
    mapping = next((m for m in row.npu or [] if m.config == value), None)
    if mapping is None:
        return [f"no Vela figures for {value} in the report; run `edgeship bench RUN --npu {value}` (edgeship[mcu])"]
    if mapping.error:
        return [f"{value}: {mapping.error}"]
    return [f"{value} leaves {op.op} {op.name or ''} on the CPU: {op.reason or 'no reason given'}"
            for op in mapping.cpu_operators]


def collapse_reasons(reference: Reference) -> list[str]:
    """A model whose predictions collapsed onto a few classes fails, however well its artifacts agree with it:
    the parity figures would vouch for a useless model. Waived only on purpose (allow_collapsed)."""
    never, present = reference.never_predicted, reference.n_classes_in_test
    if not isinstance(never, list) or not isinstance(present, int) or not predictions_collapsed(never, present):
        return []
    return [f"{describe_collapse(never, present, 'test')}: its predictions collapsed onto a few classes; retrain "
            f"(train says why), or pass --allow-collapsed if that is intended"]


for _check in (
    GateCheck("max_drop_pp", "max_drop", "pp", 1.0,
              "allowed accuracy drop in percentage points: 1, 1pp and 1%% all mean 1 pp",
              lambda v: f"accuracy may drop {v:g} pp", row=_drop),
    GateCheck("min_agreement", "min_agreement", "share", 0.98, "minimum top-1 agreement with Keras: 0.98 or 98%%",
              lambda v: f"top-1 agreement >= {v:.2%}", row=_agreement),
    GateCheck("min_accuracy", "min_accuracy", "share", None,
              "absolute floor on test accuracy for Keras and every artifact: 0.9 or 90%%",
              lambda v: f"accuracy >= {v:.2%}", row=_floor, reference=_reference_floor),
    GateCheck("max_class_drop_pp", "max_class_drop", "pp", None, "allowed accuracy drop of any single class (pp)",
              lambda v: f"any class may drop {v:g} pp", row=_class_drop),
    GateCheck("max_prob_diff", "max_prob_diff", "fraction", None, "allowed max |p_keras - p_artifact|",
              lambda v: f"max |Δp| <= {v:g}", row=_prob_diff),
    GateCheck("min_speedup", "min_speedup", "factor", None,
              "fail a quantized .tflite/.onnx less than X times faster than its float32 sibling here",
              lambda v: f"int8 >= {v:g}× faster than float32", row=_speedup),
    GateCheck("require_gpu_delegate", "require_gpu_delegate", "switch", False,
              "fail a .tflite/.onnx that no phone accelerator (TFLite GPU delegate, NNAPI, CoreML) takes whole, by "
              "the report's device-readiness check",
              lambda v: "a phone accelerator takes each artifact whole", row=_gpu_delegate),
    GateCheck("max_arena_bytes", "max_arena", "bytes", None,
              "fail a .tflite whose tensor arena under TensorFlow Lite Micro is larger, e.g. 256KB (10^3 bytes) or "
              "256KiB (needs export --also-backend tflm)",
              lambda v: f"TFLM tensor arena <= {v:,.0f} bytes", row=_tflm_bytes("arena_bytes", "tensor arena")),
    GateCheck("max_flash_bytes", "max_flash", "bytes", None,
              "fail a .tflite whose flash on a microcontroller (the file plus a 64 KiB allowance for TFLM's code) is "
              "larger, e.g. 1MB (needs export --also-backend tflm)",
              lambda v: f"TFLM flash (file + runtime) <= {v:,.0f} bytes",
              row=_tflm_bytes("flash_bytes", "flash (file + runtime)")),
    GateCheck("require_npu", "require_npu", "name", None,
              "fail an int8 .tflite with any operator that Vela leaves on the CPU of this Ethos-U configuration, "
              "e.g. ethos-u55-128 (needs bench --npu with the same configuration)",
              lambda v: f"every int8 operator on the {v} NPU", row=_npu),
    GateCheck("allow_collapsed", "allow_collapsed", "switch", False,
              "pass a model that predicts only a few of its classes on the test split (it fails otherwise)",
              lambda v: "collapsed predictions allowed"),
):
    register_check(_check)
