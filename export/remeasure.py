"""`gate RUN --remeasure`: the figures of a report made elsewhere, measured again here before the gate reads them.

Hashes bind a report's figures to the files, not the figures to the truth: whoever could write the artifact could
write its sha256 and any accuracy beside it. Remeasuring runs the Keras model (safe mode) and every artifact on
the test split again, as export does, and compares each figure the gate passes on with what the report recorded.
Nothing is written: a report that says what the files do passes on to the gate; one that does not fails it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgeship.core.integrity import load_verified_report
from edgeship.core.layout import RunLayout
from edgeship.core.tensorflow import reference_predictor
from edgeship.runtime.errors import UsageError

from .exporter import _open_run
from .parity_run import open_artifacts, stream_test_split
from .parity import accuracy, compare_predictions

# Float noise between machines (BLAS, instruction sets) can move a near-tied image's top class: a figure may differ
# by one image's worth; probabilities by this much.
PROB_TOLERANCE = 1e-3
COMPARED = ("accuracy", "agreement", "accuracy_delta_pp")


@dataclass
class Remeasured:
    n_images: int
    artifacts: list[str]  # what was run again
    differences: list[str]  # "tflite_int8: accuracy recorded 99.16 %, measured 12.50 %", ...

    @property
    def ok(self) -> bool:
        return not self.differences


def remeasure_run(run: str | Path, trust_code: bool = False, show_progress: bool = True) -> Remeasured:
    """Every artifact of RUN (and Keras) on the test split again; the recorded figures that differ."""
    report, report_path = load_verified_report(run)
    layout = RunLayout.find(report_path.parent)
    layout, bundle, model, manifest = _open_run(layout, trust_code)
    paths, labels = manifest.paths_and_indices("test", bundle.info.labels)
    if len(paths) != report.reference.n_test:
        raise UsageError(f"{report_path}: records {report.reference.n_test} test images, the split has {len(paths)} "
                         f"readable ones here; remeasure where the images are")
    rows, predictors = open_artifacts(layout, bundle, trust_code)
    streamed = stream_test_split(paths, bundle.info, reference_predictor(model, bundle.info), predictors, rows,
                                 show_progress=show_progress)
    one_image = 100.0 / max(1, len(paths))
    differences = _differ("keras", "accuracy", report.reference.accuracy,
                          accuracy(streamed.reference, labels), one_image / 100.0)
    recorded = {row.name: row for row in report.artifacts if row.ok}
    for name, row in recorded.items():
        probs = streamed.probs.get(name)
        if probs is None:
            failed = next((r for r in rows if r.name == name), None)
            differences.append(f"{name}: recorded as measured, but it does not run here "
                               f"({(failed.error if failed else None) or 'not loaded'})")
            continue
        figures = compare_predictions(streamed.reference, probs, labels, bundle.info.labels)
        for key in COMPARED:
            tolerance = one_image if key.endswith("_pp") else one_image / 100.0
            differences += _differ(name, key, getattr(row, key), figures[key], tolerance)
        differences += _differ(name, "max_abs_prob_diff", row.max_abs_prob_diff, figures["max_abs_prob_diff"],
                               PROB_TOLERANCE)
    return Remeasured(len(paths), sorted(recorded), differences)


def _differ(name: str, key: str, recorded, measured: float, tolerance: float) -> list[str]:
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool) and np.isfinite(recorded) \
            and abs(float(recorded) - measured) <= tolerance + 1e-9:
        return []
    return [f"{name}: {key} recorded {recorded!r}, measured {measured:.6g} here"]
