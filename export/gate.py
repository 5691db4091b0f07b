"""The release gate: thresholds over a parity report -> pass/fail per artifact -> exit code (and JUnit XML)."""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from xml.etree import ElementTree

from edgeship.core.formats import device_families
from edgeship.core.integrity import finite
from edgeship.core.metrics import describe_collapse, predictions_collapsed
from edgeship.core.records import GateVerdict, ParityReport, ParityRow, Readiness, Reference, Speedup
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import atomic_write_bytes

CONFIG_TABLE = ("tool", "edgeship", "gate")
CONFIG_KEYS = {"max_drop": "max_drop_pp", "min_agreement": "min_agreement", "max_class_drop": "max_class_drop_pp",
               "max_prob_diff": "max_prob_diff", "min_accuracy": "min_accuracy",
               "require_gpu_delegate": "require_gpu_delegate", "min_speedup": "min_speedup",
               "allow_collapsed": "allow_collapsed"}
BOOLEAN_KEYS = ("require_gpu_delegate", "allow_collapsed")
DEFAULT_CONFIG = "pyproject.toml"


@dataclass(frozen=True)
class GateThresholds:
    max_drop_pp: float = 1.0  # accuracy may fall at most this many percentage points below Keras
    min_agreement: float = 0.98  # fraction of test images with the same top-1 as Keras
    max_class_drop_pp: float | None = None  # the same, for every class on its own
    max_prob_diff: float | None = None  # largest |p_keras - p_artifact| over all images and classes
    min_accuracy: float | None = None  # absolute floor on test accuracy (a fraction), for artifacts and Keras
    require_gpu_delegate: bool = False  # a phone accelerator must take each .tflite/.onnx whole (report readiness)
    min_speedup: float | None = None  # each quantized .tflite/.onnx at least this many times faster than its float32
    allow_collapsed: bool = False  # pass a model whose predictions collapsed onto a few classes (waived on purpose)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in BOOLEAN_KEYS or value is None:
                continue
            # true/false or inf would switch a check off (false counts as 0, inf allows any drop)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                key = next((k for k, v in CONFIG_KEYS.items() if v == f.name), f.name)
                raise UsageError(f"gate threshold {key} (--{key.replace('_', '-')}) must be a finite number, "
                                 f"got {value!r}")
        for name in BOOLEAN_KEYS:
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.min_speedup is not None and not (isinstance(self.min_speedup, (int, float)) and self.min_speedup > 0):
            raise UsageError(f"--min-speedup must be a positive factor, e.g. 1.5, got {self.min_speedup!r}")
        for name in ("min_agreement", "min_accuracy"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0):
                raise UsageError(f"--{name.replace('_', '-')} must be a fraction in [0, 1], got {value}")


    def describe(self) -> str:
        """The thresholds as the gate understood them, in their units: printed before the verdicts."""
        parts = [f"accuracy may drop {self.max_drop_pp:g} pp", f"top-1 agreement >= {self.min_agreement:.2%}"]
        if self.min_accuracy is not None:
            parts.append(f"accuracy >= {self.min_accuracy:.2%}")
        if self.max_class_drop_pp is not None:
            parts.append(f"any class may drop {self.max_class_drop_pp:g} pp")
        if self.max_prob_diff is not None:
            parts.append(f"max |Δp| <= {self.max_prob_diff:g}")
        if self.min_speedup is not None:
            parts.append(f"int8 >= {self.min_speedup:g}× faster than float32")
        if self.require_gpu_delegate:
            parts.append("a phone accelerator takes each artifact whole")
        if self.allow_collapsed:
            parts.append("collapsed predictions allowed")
        return "thresholds: " + ", ".join(parts)


def load_gate_config(pyproject: str | Path | None = None) -> dict:
    """`[tool.edgeship.gate]` of a pyproject.toml as GateThresholds keyword arguments.

    With no path, ./pyproject.toml is read when it exists ({} otherwise). A path given explicitly must be
    a readable TOML file: a typo in `--config` must never fall back to the default thresholds."""
    explicit = pyproject is not None
    path = Path(pyproject if explicit else DEFAULT_CONFIG)
    if not path.is_file():
        if explicit:
            reason = "is a directory" if path.is_dir() else "no such file"
            raise UsageError(f"--config {path}: {reason}; give a pyproject.toml (or TOML file) with a "
                             f"[tool.edgeship.gate] table")
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read gate settings ({exc})") from exc
    for key in CONFIG_TABLE:
        table = table.get(key, {}) if isinstance(table, dict) else {}
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown [tool.edgeship.gate] key(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(CONFIG_KEYS)}")
    return {CONFIG_KEYS[k]: v for k, v in table.items()}


def resolve_thresholds(config: str | Path | None = None, **flags) -> GateThresholds:
    """Thresholds in order of precedence: flags (None = not given), then the config file, then defaults."""
    settings = load_gate_config(config)
    settings.update({k: v for k, v in flags.items() if v is not None})
    return GateThresholds(**settings)


REQUIRED_FIGURES = ("accuracy", "accuracy_delta_pp", "agreement")


def _reasons(row: ParityRow, thresholds: GateThresholds, reference: Reference) -> list[str]:
    """Why ROW fails (diagnosis lines last). Fails closed: a missing or non-finite figure is a failure."""
    broken = [k for k in REQUIRED_FIGURES if not finite(getattr(row, k))]
    if broken:
        return [f"{', '.join(broken)} missing or not a finite number in the report"]
    delta, agreement, acc = float(row.accuracy_delta_pp), float(row.agreement), float(row.accuracy)
    reasons = []
    if delta < -thresholds.max_drop_pp:
        reasons.append(f"accuracy dropped {-delta:.2f} pp (allowed {thresholds.max_drop_pp:g} pp)")
    if agreement < thresholds.min_agreement:
        reasons.append(f"top-1 agreement {agreement:.4f} < {thresholds.min_agreement:g}")
    if thresholds.min_accuracy is not None and acc < thresholds.min_accuracy:
        reasons.append(f"accuracy {acc:.2%} below the floor {thresholds.min_accuracy:.2%}")
    majority = reference.majority_accuracy
    if finite(majority) and acc <= majority:
        reasons.append(f"accuracy {acc:.2%} is no better than always answering the most common class "
                       f"({majority:.2%}): the model learned nothing usable")
    if thresholds.max_class_drop_pp is not None:
        classes = row.per_class
        if not isinstance(classes, list) or not all(isinstance(c, dict) and finite(c.get("delta_pp")) for c in classes):
            reasons.append("per-class figures missing or not finite in the report")
        else:
            worst = [c for c in classes if c["delta_pp"] < -thresholds.max_class_drop_pp]
            if worst:
                shown = ", ".join(f"{c['class']} {-c['delta_pp']:.1f} pp" for c in worst[:3])
                reasons.append(f"class accuracy dropped: {shown} (allowed {thresholds.max_class_drop_pp:g} pp per class)")
    if thresholds.max_prob_diff is not None:
        diff = row.max_abs_prob_diff
        if not finite(diff):
            reasons.append("max |Δp| missing or not finite in the report")
        elif diff > thresholds.max_prob_diff:
            reasons.append(f"max |Δp| {diff:.4f} > {thresholds.max_prob_diff:g}")
    on_device = row.format in device_families()
    if thresholds.min_speedup is not None and on_device and row.precision in SPEED_PRECISIONS:
        reasons += _speedup_reasons(row.speedup, thresholds.min_speedup)
    if thresholds.require_gpu_delegate and on_device:
        reasons += _readiness_reasons(row.readiness)
    if row.diagnosis:
        reasons.append("diagnosis: " + "; ".join(row.diagnosis))
    return reasons


# --min-speedup is for quantization that is meant to buy speed; float16 halves the file and is often no faster
SPEED_PRECISIONS = ("int8", "dynamic-int8")


def _speedup_reasons(speedup: Speedup | None, minimum: float) -> list[str]:
    """--min-speedup: a quantized artifact that is not enough faster than its float32 sibling here."""
    value = speedup.value if isinstance(speedup, Speedup) else None
    if not finite(value):
        return ["no speed-up figure over float32 in the report (export both, or `edgeship bench` the run)"]
    if value < minimum:
        how = f"only {value:.2f}× faster" if value >= 1 else f"{1 / value:.1f}× slower"
        return [f"{how} than {speedup.over or 'float32'} here (wanted {minimum:g}× faster; "
                f"{speedup.threads or 'default'} thread(s), from {speedup.source or '?'})"]
    return []


def _readiness_reasons(entry: Readiness | None) -> list[str]:
    """--require-gpu-delegate: why no accelerator takes the artifact whole (it would fall back to the CPU)."""
    if not isinstance(entry, Readiness) or not (entry.accelerators or entry.error):
        return ["no device-readiness figures in the report; re-run `edgeship export`"]
    if entry.error is not None:
        return [f"device readiness could not be checked: {entry.error}"]
    if entry.ready:
        return []
    worst = []
    for name, value in entry.accelerators.items():
        if value.partitioned:
            worst.append(f"{name} {value.partitions} partition(s) over {value.coverage:.0%} of nodes")
        else:
            worst.append(f"{name}: {'; '.join(value.issues or ['not ready'])}")
    return ["no phone accelerator takes it whole, it would fall back to the CPU (" + "; ".join(worst) + ")"]


def evaluate_gate(report: ParityReport, thresholds: GateThresholds) -> list[GateVerdict]:
    """One verdict per artifact (and one for the Keras reference under --min-accuracy)."""
    if isinstance(report, dict) and (not isinstance(report.get("artifacts"), list)
                                     or not all(isinstance(a, dict) for a in report["artifacts"])):
        raise UsageError("report has no list of artifacts to gate; run `edgeship export` first")
    report = ParityReport.of(report)
    if not report.artifacts:
        raise UsageError("report has no artifacts to gate; run `edgeship export` first")
    reference = _reference(report)
    verdicts = []
    ref_acc = reference.accuracy
    reference_reasons = []
    if thresholds.min_accuracy is not None and ref_acc is not None:
        if not finite(ref_acc) or ref_acc < thresholds.min_accuracy:
            reference_reasons.append(f"reference accuracy {ref_acc if not finite(ref_acc) else format(ref_acc, '.2%')} "
                                     f"below the floor {thresholds.min_accuracy:.2%}")
    reference_reasons += _collapse_reasons(reference, thresholds)
    if reference_reasons:
        verdicts.append(GateVerdict(REFERENCE_VERDICT, False, reference_reasons))
    for row in report.artifacts:
        if not row.ok:
            verdicts.append(GateVerdict(row.name, False, [f"export failed: {row.error or 'unknown error'}"]))
            continue
        verdicts.append(row_verdict(row, thresholds, reference))
    for verdict in verdicts:  # what the figures stand on: a folder's unreadable images are counted, not hidden
        verdict.n_images, verdict.n_skipped = reference.n_test, reference.n_skipped
    return verdicts


def _reference(report: ParityReport) -> Reference:
    """The report's reference record; an empty one when a hand-made report holds something else there."""
    return report.reference if isinstance(report.reference, Reference) else Reference()


REFERENCE_VERDICT = "keras (reference)"


def _collapse_reasons(reference: Reference, thresholds: GateThresholds) -> list[str]:
    """A model whose predictions collapsed onto a few classes fails, however well its artifacts agree with it:
    the gate's parity figures would vouch for a useless model. Waived only on purpose (--allow-collapsed)."""
    never, present = reference.never_predicted, reference.n_classes_in_test
    if thresholds.allow_collapsed or not isinstance(never, list) or not isinstance(present, int):
        return []
    if not predictions_collapsed(never, present):
        return []
    return [f"{describe_collapse(never, present, 'test')}: its predictions collapsed onto a few classes; retrain "
            f"(train says why), or pass --allow-collapsed if that is intended"]


def reference_line(report: ParityReport) -> str:
    """What the gate stands on, printed first: the reference's own accuracy and the images it was measured on."""
    reference = _reference(ParityReport.of(report))
    accuracy, n = reference.accuracy, reference.n_test
    shown = format(accuracy, ".2%") if finite(accuracy) else "missing"
    majority = reference.majority_accuracy
    floor = f" (always answering the most common class: {majority:.2%})" if finite(majority) else ""
    return f"reference {reference.format or Path(str(reference.path or 'model')).name} accuracy {shown} on {n} test images{floor}"


def row_verdict(row: ParityRow, thresholds: GateThresholds, reference: Reference, name: str | None = None) -> GateVerdict:
    """PASS/FAIL for one row of figures (an artifact here, or the same artifact on a target), named NAME."""
    reasons = _reasons(row, thresholds, reference)
    # A diagnosis only explains a failure; it does not fail an artifact that meets every threshold.
    failing = [r for r in reasons if not r.startswith("diagnosis: ")]
    return GateVerdict(name or row.name, not failing, reasons if failing else [])


def write_junit(verdicts: list[GateVerdict], path: str | Path, suite: str = "edgeship.gate",
                report: ParityReport | None = None) -> Path:
    """One JUnit test case per artifact, so any CI shows failing artifacts as failing tests; the suite's
    properties and output carry the reference's accuracy, so a pass says what it passed."""
    failures = [v for v in verdicts if not v.passed]
    root = ElementTree.Element("testsuites")
    testsuite = ElementTree.SubElement(root, "testsuite", name=suite, tests=str(len(verdicts)),
                                       failures=str(len(failures)), errors="0", skipped="0")
    if report is not None:
        reference = _reference(report)
        properties = ElementTree.SubElement(testsuite, "properties")
        for key in ("accuracy", "n_test", "majority_accuracy"):
            if getattr(reference, key) is not None:
                ElementTree.SubElement(properties, "property", name=f"reference_{key}",
                                       value=str(getattr(reference, key)))
        ElementTree.SubElement(testsuite, "system-out").text = reference_line(report)
    for verdict in verdicts:
        case = ElementTree.SubElement(testsuite, "testcase", classname=suite, name=verdict.artifact)
        if verdict.n_images is not None:
            properties = ElementTree.SubElement(case, "properties")
            for key in ("n_images", "n_skipped"):
                if getattr(verdict, key) is not None:
                    ElementTree.SubElement(properties, "property", name=key, value=str(getattr(verdict, key)))
        if not verdict.passed:
            failure = ElementTree.SubElement(case, "failure", message="; ".join(verdict.reasons)[:1000])
            failure.text = "\n".join(verdict.reasons)
    for element in root.iter():  # reasons carry class names and a board's words: XML 1.0 takes no control chars
        element.text = _xml_text(element.text)
        for key, value in element.attrib.items():
            element.attrib[key] = _xml_text(value)
    data = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return atomic_write_bytes(path, data)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str | None) -> str | None:
    return None if text is None else _NOT_XML.sub("?", text)
