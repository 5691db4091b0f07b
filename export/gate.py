"""The release gate: thresholds over a parity report -> pass/fail per artifact -> exit code."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edgeship.runtime.errors import UsageError


@dataclass(frozen=True)
class GateThresholds:
    max_drop_pp: float = 1.0  # accuracy may fall at most this many percentage points below Keras
    min_agreement: float = 0.98  # fraction of test images with the same top-1 as Keras

    def __post_init__(self):
        if not 0.0 <= self.min_agreement <= 1.0:
            raise UsageError(f"--min-agreement must be a fraction in [0, 1], got {self.min_agreement}")
        if math.isnan(self.max_drop_pp):
            raise UsageError("--max-drop must be a number of percentage points")


@dataclass
class GateVerdict:
    artifact: str
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.artifact}" + (f": {'; '.join(self.reasons)}" if self.reasons else "")


def evaluate_gate(report: dict, thresholds: GateThresholds) -> list[GateVerdict]:
    artifacts = report.get("artifacts")
    if not isinstance(artifacts, list) or not artifacts:
        raise UsageError("report has no artifacts to gate; run `edgeship export` first")
    verdicts = []
    for record in artifacts:
        name = record.get("name", "?")
        if record.get("status", "ok") != "ok":
            verdicts.append(GateVerdict(name, False, [f"export failed: {record.get('error', 'unknown error')}"]))
            continue
        try:
            delta, agreement = float(record["accuracy_delta_pp"]), float(record["agreement"])
        except (KeyError, TypeError, ValueError):
            verdicts.append(GateVerdict(name, False, ["no parity figures in the report"]))
            continue
        reasons = []
        if delta < -thresholds.max_drop_pp:
            reasons.append(f"accuracy dropped {-delta:.2f} pp (allowed {thresholds.max_drop_pp:g} pp)")
        if agreement < thresholds.min_agreement:
            reasons.append(f"top-1 agreement {agreement:.4f} < {thresholds.min_agreement:g}")
        verdicts.append(GateVerdict(name, not reasons, reasons))
    return verdicts
