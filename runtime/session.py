"""What a runtime session is (the `Session` protocol every backend's session meets) and the helpers the sessions
share: reading a model file safely, parsing embedded metadata, quantizing pixels, NHWC/NCHW layouts.

`Classifier` (runtime/classifier.py), timing (runtime/timing.py) and OpenVINO's session only ever use the
members written below, so a new backend is a class meeting them plus one `register_backend(...)`."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import ModelLoadError
from .fileio import NotRegularFile, read_regular_file
from .spec import MAX_ARTIFACT_BYTES


@runtime_checkable
class Session(Protocol):
    """One loaded model on one runtime. Pixels in (NHWC, 0-255), float scores out; the session quantizes inputs
    and dequantizes outputs with the model's own scale and zero-point."""

    backend: str  # the registry name that opened it: tflite, onnxruntime, openvino
    thread_safe: bool  # may one session be run from several threads at once (else `clone()` per thread)
    path: Path
    implementation: str  # what computes here: 'ai-edge-litert 2.3.0', 'onnxruntime 1.23.2 (CPUExecutionProvider)'
    embedded: dict | None  # edgeship's metadata inside the file (labels, input spec), or None
    input_shape: tuple  # 4-D; -1 where the model leaves a dimension open
    input_dtype: np.dtype
    layout: str  # NHWC or NCHW

    @property
    def model_bytes(self) -> bytes:
        """The bytes the session was made from (checked once; timing sessions and OpenVINO reuse them)."""

    @property
    def quantization(self) -> dict[str, Any]:
        """The input/output scale and zero-point of an integer model ({} for float models)."""

    @property
    def raw_integer_output(self) -> bool:
        """An integer output with no known scale: not probabilities until `set_output_quantization`."""

    def set_output_quantization(self, scale: float, zero_point: float) -> None:
        """The integer output's scale when the model records none (--output-scale)."""

    def clone(self) -> "Session":
        """A session for another thread (the same one when `thread_safe`)."""

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        """NHWC uint8 pixels -> the input tensor in the model's dtype and layout."""

    def run_prepared(self, tensor: np.ndarray) -> np.ndarray:
        """Float scores for a tensor from `prepare` (what timing loops call)."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        """`run_prepared(prepare(batch))`."""

    def dequantize(self, out: np.ndarray) -> np.ndarray:
        """A raw output tensor as float scores."""


def quantize(batch: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    info = np.iinfo(dtype)
    values = np.round(batch.astype(np.float32) / scale + zero_point)
    return np.clip(values, info.min, info.max).astype(dtype)


def parse_embedded(raw: bytes | str | None, source: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{source}: embedded edgeship metadata is not valid JSON ({exc})") from exc


def image_layout(shape: tuple[int, ...]) -> str:
    """NHWC or NCHW, from a 4-D input shape: channels first when dimension 1 holds 1 or 3 channels and the
    last does not (edgeship's own models, TFLite and Keras exports are NHWC; PyTorch's ONNX exports NCHW)."""
    return "NCHW" if shape[1] in (1, 3) and shape[3] not in (1, 3) else "NHWC"


def image_size(session) -> tuple[int, int]:
    """(height, width) of a session's input, -1 where the model leaves it open."""
    shape = session.input_shape
    return (shape[2], shape[3]) if session.layout == "NCHW" else (shape[1], shape[2])


def to_layout(batch: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if layout == "NCHW" else batch


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def import_or_explain(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelLoadError(f"{module} is not installed; pip install {package}") from exc


def read_model_file(path: Path) -> bytes:
    """A model file the user named (a link to it is fine; a FIFO or a device never is: it would hang)."""
    try:
        data = read_regular_file(path, MAX_ARTIFACT_BYTES)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path}: no such model file") from exc
    except NotRegularFile as exc:
        raise ModelLoadError(f"{exc}; give a model file") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read model file ({exc})") from exc
    if not data:
        raise ModelLoadError(f"{path}: zero-byte model file")
    return data
