"""The release gate: thresholds over a parity report -> pass/fail per artifact -> exit code (and JUnit XML).

What each threshold checks lives in gate_checks.py, one object per threshold."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from xml.etree import ElementTree

from edgeship.core.integrity import finite
from edgeship.core.records import GateVerdict, ParityReport, ParityRow, Reference
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import atomic_write_bytes

from .gate_checks import GATE_CHECKS, checks_by_key, collapse_reasons

CONFIG_TABLE = ("tool", "edgeship", "gate")
DEFAULT_CONFIG = "pyproject.toml"


class GateThresholds:
    """The value of every registered gate check (gate_checks.GATE_CHECKS), by its name: `GateThresholds(
    max_drop_pp=0.5)`, `thresholds.max_drop_pp`. Positional values follow the registry's order. A value: frozen."""

    __slots__ = ("_values",)

    def __init__(self, *positional, **values):
        names = list(GATE_CHECKS)
        if len(positional) > len(names):
            raise TypeError(f"GateThresholds takes at most {len(names)} positional values")
        given = dict(zip(names, positional))
        twice = sorted(set(given) & set(values))
        unknown = sorted(set(values) - set(names))
        if twice or unknown:
            raise TypeError(f"GateThresholds got {'unknown' if unknown else 'repeated'} threshold(s) "
                            f"{', '.join(unknown or twice)}; known: {', '.join(names)}")
        given.update(values)
        for name, value in given.items():
            GATE_CHECKS[name].check_value(value)
        object.__setattr__(self, "_values", {name: given.get(name, check.default) for name, check in GATE_CHECKS.items()})

    def __getattr__(self, name: str):
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        if name in GATE_CHECKS:  # registered after these thresholds were made
            return GATE_CHECKS[name].default
        raise AttributeError(name)

    def __setattr__(self, name, value):
        raise AttributeError("GateThresholds is a value: make a new one")

    def __eq__(self, other) -> bool:
        return isinstance(other, GateThresholds) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"GateThresholds({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in GATE_CHECKS}

    def active(self):
        """(check, value) for every check that is switched on."""
        for name, check in GATE_CHECKS.items():
            value = getattr(self, name)
            if value is not None and value is not False:
                yield check, value

    def describe(self) -> str:
        """The thresholds as the gate understood them, in their units: printed before the verdicts."""
        return "thresholds: " + ", ".join(check.describe(value) for check, value in self.active())


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
    keys = checks_by_key()
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise UsageError(f"{path}: unknown [tool.edgeship.gate] key(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(keys)}")
    return {keys[k].name: v for k, v in table.items()}


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
    reasons = []
    for check, value in thresholds.active():
        if check.row is not None:
            reasons += check.row(value, row, reference)
    majority, accuracy = reference.majority_accuracy, float(row.accuracy)
    if finite(majority) and accuracy <= majority:
        reasons.append(f"accuracy {accuracy:.2%} is no better than always answering the most common class "
                       f"({majority:.2%}): the model learned nothing usable")
    if row.diagnosis:
        reasons.append("diagnosis: " + "; ".join(row.diagnosis))
    return reasons


def evaluate_gate(report: ParityReport, thresholds: GateThresholds) -> list[GateVerdict]:
    """One verdict per artifact (and one for the Keras reference under --min-accuracy)."""
    report = ParityReport.of(report)
    if not report.artifacts:
        raise UsageError("report has no artifacts to gate; run `edgeship export` first")
    reference = _reference(report)
    verdicts = []
    reference_reasons = []
    for check, value in thresholds.active():
        if check.reference is not None:
            reference_reasons += check.reference(value, reference)
    if not thresholds.allow_collapsed:  # a waiver, not a threshold: collapse always fails unless waived
        reference_reasons += collapse_reasons(reference)
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
