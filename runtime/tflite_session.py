"""TFLite sessions: ai-edge-litert's interpreter (the maintained successor of tflite-runtime), else tflite-runtime,
else TensorFlow's own `tf.lite`, first that imports."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError
from .quiet import quiet_native_stderr
from .session import first_line, image_layout, parse_embedded, quantize, read_model_file, to_layout
from .spec import EMBEDDED_KEY
from .tflite_metadata import read_tflite_metadata

TFLITE_INTERPRETERS = (
    ("ai_edge_litert.interpreter", "ai_edge_litert"),
    ("tflite_runtime.interpreter", "tflite_runtime"),
    ("tensorflow.lite", "tensorflow.lite"),
)


def _tflite_interpreter():
    for module_name, label in TFLITE_INTERPRETERS:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # tflite_runtime raises SystemError with NumPy 2, not only ImportError
            continue
        return module.Interpreter, label
    raise ModelLoadError(
        "no TFLite interpreter installed; pip install ai-edge-litert (or edgeship[runtime])"
    )


def probe_tflite() -> str | None:
    try:
        return _tflite_interpreter()[1]
    except ModelLoadError:
        return None




class TFLiteSession:
    """One TFLite interpreter. Interpreters are not thread-safe: `clone()` gives another one for another
    thread from the same model bytes (Classifier does this for you)."""

    backend = "tflite"
    thread_safe = False

    def __init__(self, path: Path, threads: int | None = None, data: bytes | None = None):
        self.path = Path(path)
        self.threads = threads
        self._data = data if data is not None else read_model_file(self.path)
        self.embedded = parse_embedded(read_tflite_metadata(self._data, str(path)).get(EMBEDDED_KEY), str(path))
        interpreter_cls, self.implementation = _tflite_interpreter()
        try:
            kwargs = {"model_content": self._data}
            if threads:
                kwargs["num_threads"] = int(threads)
            with quiet_native_stderr():  # LiteRT's "Created XNNPACK delegate" line, once per process
                self._interpreter = interpreter_cls(**kwargs)
                self._interpreter.allocate_tensors()
            inp = self._interpreter.get_input_details()[0]
            out = self._interpreter.get_output_details()[0]
            self._in_index, self._out_index = inp["index"], out["index"]
            self.input_dtype = np.dtype(inp["dtype"])
            self.input_shape = tuple(int(d) for d in inp["shape"])
            self._in_scale, self._in_zero = (float(v) for v in inp["quantization"])
            self._out_scale, self._out_zero = (float(v) for v in out["quantization"])
            out_dtype = np.dtype(out["dtype"])
        except Exception as exc:  # interpreters raise ValueError/RuntimeError (and worse) on broken files
            raise ModelLoadError(f"{path}: TFLite interpreter cannot load it ({first_line(exc)})") from exc
        if len(self.input_shape) != 4:
            raise ModelLoadError(f"{path}: expected an NHWC image input, got shape {self.input_shape}")
        self.layout = image_layout(self.input_shape)
        self.output_shape = tuple(int(d) for d in out["shape"])
        self._in_quantized = self.input_dtype.kind in "iu" and self._in_scale > 0
        self._out_quantized = out_dtype.kind in "iu" and self._out_scale > 0
        self.output_dtype = out_dtype
        self.raw_integer_output = out_dtype.kind in "iu" and not self._out_quantized  # no scale: not probabilities
        # Pixels are uint8: quantizing them is a 256-entry table, often the identity (scale 1, zero-point 0).
        self._pixel_table = (quantize(np.arange(256, dtype=np.uint8), self.input_dtype, self._in_scale, int(self._in_zero))
                             if self._in_quantized else None)
        self._pixels_pass_through = (self._pixel_table is not None and self.input_dtype == np.uint8
                                     and np.array_equal(self._pixel_table, np.arange(256)))
        self._batch = self.input_shape[0]
        self._resizable = True

    def clone(self) -> "TFLiteSession":
        twin = TFLiteSession(self.path, self.threads, self._data)
        if self._out_quantized and twin.raw_integer_output:  # a scale the user gave (set_output_quantization)
            twin.set_output_quantization(self._out_scale, self._out_zero)
        return twin

    def set_output_quantization(self, scale: float, zero_point: float) -> None:
        """Dequantize an integer output whose model records no scale (the user says it: --output-scale)."""
        self._out_scale, self._out_zero = float(scale), float(zero_point)
        self._out_quantized, self.raw_integer_output = True, False

    @property
    def quantization(self) -> dict[str, Any]:
        return {"input_scale": self._in_scale, "input_zero_point": int(self._in_zero),
                "output_scale": self._out_scale, "output_zero_point": int(self._out_zero)}

    @property
    def model_bytes(self) -> bytes:
        return self._data

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        """NHWC pixels (uint8, or floats already normalized) -> the input tensor in the model's dtype and layout."""
        if not self._in_quantized:
            tensor = batch.astype(self.input_dtype, copy=False)
        elif batch.dtype == np.uint8:
            tensor = batch if self._pixels_pass_through else self._pixel_table[batch]
        else:
            tensor = quantize(batch, self.input_dtype, self._in_scale, int(self._in_zero))
        return to_layout(tensor, self.layout)

    def _resize(self, batch_size: int) -> bool:
        try:
            self._interpreter.resize_tensor_input(self._in_index, [batch_size, *self.input_shape[1:]])
            self._interpreter.allocate_tensors()
        except Exception:  # some models have a fixed batch: fall back to one image at a time
            self._resizable = False
            self._interpreter.resize_tensor_input(self._in_index, list(self.input_shape))
            self._interpreter.allocate_tensors()
            self._batch = self.input_shape[0]
            return False
        self._batch = batch_size
        return True

    def _invoke(self, tensor: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._in_index, tensor)
        try:
            self._interpreter.invoke()
        except RuntimeError as exc:  # e.g. "Input tensor 19 lacks data": a broken file shows only when run
            raise ModelLoadError(f"{self.path}: TFLite interpreter cannot run it ({first_line(exc)})") from exc
        return self.dequantize(self._interpreter.get_tensor(self._out_index))

    def dequantize(self, out: np.ndarray) -> np.ndarray:
        """The output tensor as float scores (an integer output through its scale and zero-point)."""
        if self._out_quantized:
            return (out.astype(np.float32) - np.float32(self._out_zero)) * np.float32(self._out_scale)
        return out.astype(np.float32, copy=False)  # get_tensor already returns a copy

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Float outputs for a batch of 0-255 pixels."""
        return self.run_prepared(self.prepare(batch))

    def run_prepared(self, tensor: np.ndarray) -> np.ndarray:
        """Float outputs for a batch already in the model's input dtype (see prepare)."""
        if tensor.shape[0] == self._batch:
            return self._invoke(tensor)
        if self._resizable and self._resize(tensor.shape[0]):
            return self._invoke(tensor)
        if self._batch != 1:
            self._resize(1)
        return np.concatenate([self._invoke(tensor[i : i + 1]) for i in range(tensor.shape[0])])
