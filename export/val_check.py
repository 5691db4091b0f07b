"""Each exported artifact's figures on the validation split: what a search chooses on, never the test split.

Export's parity report measures the test split, which gives the final figures and must never steer a choice.
A search over many trained candidates (edgeship.sweep) needs the same figures where choices are allowed: the
val split (else calib), the artifact's accuracy there and its top-1 agreement with the Keras model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from edgeship.core.layout import RunLayout
from edgeship.core.tensorflow import load_artifact

from .exporter import _open_run, _validation_set


@dataclass(frozen=True)
class ValFigures:
    split: str  # val, or calib when the run has no val split
    n_images: int
    accuracy: float
    reference_accuracy: float  # the Keras model's on the same images
    agreement: float  # top-1 agreement with the Keras model

    @property
    def drop_pp(self) -> float:
        return 100.0 * (self.reference_accuracy - self.accuracy)

    def to_json(self) -> dict:
        return {**asdict(self), "drop_pp": round(self.drop_pp, 4)}


def val_figures(run: str | Path, names, trust_code: bool = False) -> dict[str, ValFigures]:
    """NAMES' figures on RUN's validation split, each artifact's bytes verified against its bundle record."""
    layout = RunLayout.find(run)
    layout, bundle, model, manifest = _open_run(layout, trust_code)
    val = _validation_set(manifest, bundle, model, show_progress=False)
    if val is None:
        return {}
    figures = {}
    for name in names:
        record = bundle.artifact(name)
        bundle.verify_artifact(layout.bundle, record)
        top = load_artifact(bundle, layout.bundle, record, trust_code).predict_proba(val.images).argmax(axis=1)
        figures[name] = ValFigures(val.split, len(val.labels), float(np.mean(top == val.labels)),
                                   val.reference_accuracy, float(np.mean(top == val.reference_top)))
    return figures
