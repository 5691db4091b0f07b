"""The one predictor contract: pixels in, class probabilities out.

Every model edgeship runs goes through it: the device backends (`Classifier`: TFLite, ONNX Runtime) and,
on the workstation, `edgeship.core.tensorflow.TensorFlowPredictor` (a `.keras` model or a SavedModel).
Parity, the gate's `--reference/--candidate`, bench and diagnosis only ever see this. Like ONNX
Runtime's `CalibrationDataReader`, it is a protocol of a few lines, not a base class.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .spec import ModelInfo


@runtime_checkable
class Predictor(Protocol):
    name: str  # the artifact's name in its bundle, or the file name
    info: ModelInfo  # labels and input spec: what the pixels must look like
    threads: int | None  # None: the backend's default

    @property
    def runtime(self) -> str:
        """What runs it here, e.g. 'ai-edge-litert 2.3.0' or 'keras 3.15.1'."""

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB pixels prepared by runtime.preprocess -> (N, len(labels)) probabilities."""
