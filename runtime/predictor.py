"""The one predictor contract: pixels in, class probabilities out.

Every model edgeship runs goes through it: the device backends (`Classifier`: TFLite, ONNX Runtime) and,
on the workstation, `edgeship.core.tensorflow.TensorFlowPredictor` (a `.keras` model or a SavedModel).
Parity, the gate's `--reference/--candidate`, bench and diagnosis only ever see this. Like ONNX
Runtime's `CalibrationDataReader`, it is a protocol of a few lines, not a base class.

Two optional abilities, each its own small protocol, so no caller reaches into a predictor's session:
`Timed` (a fresh session at a given thread count, for timing) and `QuantizedInput` (the input tensor's
dtype, scale and zero-point, for explaining a collapse). Device backends have both; TensorFlow has neither.
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


@runtime_checkable
class Timed(Protocol):
    def timing_session(self, threads: int | None):
        """A session of the same file of its own, at THREADS, for timing (runtime.timing.session_times)."""


@runtime_checkable
class QuantizedInput(Protocol):
    def input_quantization(self) -> tuple[np.dtype, float, int] | None:
        """(dtype, scale, zero-point) of an integer input tensor; None when the model takes floats."""
