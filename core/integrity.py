"""Bind a report's figures to the bytes they describe. A gate that passes on a report which no longer
describes the files on disk (a swapped artifact, an edited edgeship.json, a retrained model, a killed
export) is worse than no gate, so every check here fails closed and names the file and the fix."""

from __future__ import annotations

import math
from pathlib import Path

from edgeship.runtime.errors import EdgeshipError, IntegrityError
from edgeship.runtime.fileio import sha256_file
from edgeship.runtime.spec import MANIFEST_NAME, Bundle

from .layout import RunLayout
from .records import ParityReport
from .report import load_report

BOUND_KEYS = ("model_sha256", "split_sha256", "info_sha256")


def report_problems(report: ParityReport, layout: RunLayout) -> list[str]:
    """Every way in which REPORT no longer describes the files of LAYOUT's run; [] when it does."""
    report = ParityReport.of(report)
    missing = [k for k in BOUND_KEYS if not getattr(report, k)]
    if missing:
        return [f"the report records no {', '.join(missing)} (written by an older edgeship?)"]
    try:
        bundle = Bundle.load(layout.bundle)
    except EdgeshipError as exc:
        return [str(exc)]
    problems = []
    model = layout.bundle / (bundle.keras_model or "model.keras")
    split = layout.bundle / (bundle.split_manifest or "splits.csv")
    for path, recorded in ((model, report.model_sha256), (split, report.split_sha256)):
        if not path.is_file():
            problems.append(f"{path.name} is missing")
        elif sha256_file(path) != recorded:
            problems.append(f"{path.name} changed after the report was written")
    if bundle.provenance.get("model_sha256") not in (None, report.model_sha256):
        problems.append(f"{MANIFEST_NAME} belongs to another model.keras than the report")
    if bundle.info.digest() != report.info_sha256 or list(bundle.info.labels) != report.labels:
        problems.append(f"the labels or input spec in {MANIFEST_NAME} changed after the report was written")
    records = {r.name: r for r in bundle.artifacts}
    for row in report.artifacts:
        if not row.ok:
            continue
        record = records.get(row.name)
        if record is None or not record.ok:
            problems.append(f"artifact {row.name!r} is in the report but not in {MANIFEST_NAME}")
            continue
        if record.sha256 != row.sha256:
            problems.append(f"{record.file} was re-exported or replaced after the report was written")
            continue
        try:
            bundle.verify_artifact(layout.bundle, record)
        except IntegrityError as exc:
            problems.append(str(exc).split(": ", 1)[-1].split("; re-run")[0] + f" ({record.file})")
    fake = report.fake_quant_reference or {}  # a QAT run: the second reference's figures are bound to it too
    for file, digest in ((report.reference.probs_file, report.reference.probs_sha256),
                         (fake.get("path"), fake.get("sha256") if fake else None)):
        if file is None:
            continue
        path = layout.root / file
        if not path.is_file():
            problems.append(f"{file} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{file} changed after the report was written")
    reported = {row.name for row in report.artifacts}
    unmeasured = [n for n, r in records.items() if r.ok and n not in reported]
    if unmeasured:
        problems.append(f"artifact(s) {', '.join(unmeasured)} have no figures in the report")
    return problems


def load_verified_report(path: str | Path) -> tuple[ParityReport, Path]:
    """report.json (from a path to it or to its run) after checking it against every file it describes."""
    report, report_path = load_report(path)
    try:
        layout = RunLayout.find(report_path.parent)
    except EdgeshipError:
        raise IntegrityError(f"{report_path}: no bundle beside this report, so its figures cannot be checked "
                             f"against the files; gate the run directory itself") from None
    problems = report_problems(report, layout)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise IntegrityError(f"{report_path}: stale, it no longer describes the files: {problems[0]}{more}; "
                             f"re-run `edgeship export {layout.root}`")
    return report, report_path


def finite(value) -> bool:
    """A figure a gate may pass on: a real, finite number (NaN, inf, None and strings are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def trained_files(layout: RunLayout, bundle: Bundle) -> tuple[Path, Path]:
    """The run's model.keras and splits.csv, after checking they are the files the bundle was trained with."""
    model_path = layout.bundle / (bundle.keras_model or "model.keras")
    split_path = layout.bundle / (bundle.split_manifest or "splits.csv")
    for path, recorded in ((model_path, bundle.provenance.get("model_sha256")),
                           (split_path, bundle.provenance.get("split", {}).get("sha256"))):
        if not path.is_file():
            raise IntegrityError(f"{path}: missing from the bundle; re-run `edgeship train`")
        if recorded is not None and sha256_file(path) != recorded:
            raise IntegrityError(f"{path}: changed since training (sha256 differs from {MANIFEST_NAME}'s record); "
                                 f"re-run `edgeship train`")
    return model_path, split_path
