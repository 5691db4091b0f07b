"""OpenVINO as a runtime for the artifacts edgeship already makes: it reads `.tflite` and `.onnx` directly
(`openvino.Core.read_model`), and on Intel CPUs it is the fastest float runtime measured here.

The file's own runtime session is opened too, once, for what OpenVINO does not say the same way: the input
dtype and layout, the integer output's scale, and the labels embedded in the file. OpenVINO then does the
compute. `pip install edgeship[openvino]`.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np

from .errors import ModelLoadError, UsageError


class OpenVinoSession:
    backend = "openvino"
    thread_safe = False  # one infer request per session; clone() gives another on the same compiled model

    def __init__(self, path: Path, native, threads: int | None = None):
        """NATIVE: the file's own runtime session (runtime.backends opens it), for its IO and metadata."""
        self.path, self.native = Path(path), native
        try:
            import openvino as ov
        except ImportError:  # a usage matter, not a broken file: bench reports the row unavailable, with this
            raise UsageError("openvino is not installed here; pip install edgeship[openvino]") from None
        # f32: the artifact's own precision. On a CPU with bf16 units OpenVINO's default computes in bf16, which
        # moved the demo's float32 scores by up to 0.02; a float32 row should mean float32 arithmetic.
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            core = ov.Core()
            self._compiled = core.compile_model(_read_model(core, native.model_bytes, self.path.suffix), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with the frontend's message
            raise ModelLoadError(f"{path}: OpenVINO cannot load it ({(str(exc).strip().splitlines() or [''])[0][:300]})") from exc
        self._request = self._compiled.create_infer_request()
        self.implementation = f"openvino {ov.__version__.split('-')[0]} (CPU)"
        for name in ("input_shape", "input_dtype", "layout", "embedded"):
            setattr(self, name, getattr(self.native, name))
        self.metadata_props = getattr(self.native, "metadata_props", {})
        self.quantization = self.native.quantization

    @property
    def raw_integer_output(self) -> bool:
        return getattr(self.native, "raw_integer_output", False)

    def set_output_quantization(self, scale: float, zero_point: float) -> None:
        self.native.set_output_quantization(scale, zero_point)

    def clone(self) -> "OpenVinoSession":
        twin = copy.copy(self)
        twin._request = self._compiled.create_infer_request()
        return twin

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        return self.native.prepare(batch)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_prepared(self.prepare(batch))

    def run_prepared(self, tensor: np.ndarray) -> np.ndarray:
        out = self._request.infer({0: np.ascontiguousarray(tensor)})[self._compiled.output(0)]
        return self.native.dequantize(np.asarray(out))


def _read_model(core, data: bytes, suffix: str):
    """OpenVINO's model from the bytes the native session already read and checked, through a private copy
    (its frontends read files by name): the file in the bundle is never opened a second time."""
    with tempfile.TemporaryDirectory(prefix="edgeship-openvino-") as folder:
        copy_path = Path(folder) / f"model{suffix}"
        copy_path.write_bytes(data)
        return core.read_model(str(copy_path))
