"""TensorFlow Lite Micro as a runtime: the microcontroller interpreter with its own reference kernels, run here
through the `tflite-micro` wheel (`pip install 'edgeship[mcu]'`). It reads the `.tflite` files LiteRT runs; what
it adds is whether a microcontroller's runtime has every op of the file, with the same answers, and the tensor
arena the model needs, measured by allocating it in the interpreter (not estimated)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError, UsageError
from .quiet import captured_native
from .session import image_layout, parse_embedded, quantize, read_model_file
from .spec import EMBEDDED_KEY
from .tflite_metadata import read_tflite_metadata

# The runtime's own flash, added to the model file for `flash_bytes`. An allowance, not a measurement (its code is
# built for the board, not here): TFLM's README puts the core at 16 KB on a Cortex-M3 and a keyword model's op set
# at 22 KB in all; an image classifier's kernels (conv, depthwise, pooling, softmax) are budgeted at 64 KiB.
RUNTIME_FLASH_BYTES = 64 * 1024
_ARENA = re.compile(r"Arena allocation total (\d+) bytes")
# What to do about an op TFLM would not run, by op (the rest: its list of supported ops)
FIXES = {"DEQUANTIZE": "float16 weights are widened to float at run time; ship the full-integer tflite_int8",
         "FLEX": "the model needs TensorFlow ops (Flex delegate); convert with builtin ops only"}
_FAILED_NODE = re.compile(r"Node (\w+) \(number (\d+)\) failed to (prepare|invoke)")


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise UsageError("tflite-micro is not installed here; pip install 'edgeship[mcu]'") from None
    return runtime


def probe_tflm() -> str | None:
    try:
        import tflite_micro
    except ImportError:
        return None
    return f"tflite-micro {str(getattr(tflite_micro, '__version__', '?')).split('-')[0]}"


def refusal(log: str, error: Exception) -> str:
    """TFLM's own words for a model it will not run: the op and the check that failed, in one line."""
    node = _FAILED_NODE.search(log)
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    check = next((line for line in lines if "was not true" in line or "not supported" in line.lower()
                  or "Didn't find op" in line), None)
    if node:
        op = node.group(1)
        fix = ("a dynamic-range (hybrid) model: TFLM runs full-integer ones; ship tflite_int8"
               if check and "Hybrid models" in check else
               FIXES.get(op, "TFLM's reference kernels lack this op or this type of it; see its supported ops"))
        return f"op {op} (node {node.group(2)}) failed to {node.group(3)} ({check or 'no reason given'}); {fix}"
    return check or (lines[-1] if lines else str(error))


# Loads the model from stdin, allocates and invokes it once on zeros: a kernel that aborts does so in this child
_TRIAL = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
try:
    interpreter = runtime.Interpreter.from_bytes(sys.stdin.buffer.read())
except Exception:
    sys.exit(3)  # a refusal with a reason: the parent loads it again and reports TFLM's words
d = interpreter.get_input_details(0)
interpreter.set_input(np.zeros(d["shape"], d["dtype"]), 0)
interpreter.invoke()
"""
TRIAL_TIMEOUT_S = 300


def survives(data: bytes, path: Path) -> None:
    """Load, allocate and invoke DATA once in a child process first: some TFLM kernels abort the process on shapes
    they do not handle (MobileNetV2 int8 at 32 and 48 px, alpha 0.35: SIGABRT without a word, tflite-micro
    0.dev20261023), which would take export or sweep down with them. A model that kills the child is refused with
    the signal named."""
    try:
        done = subprocess.run([sys.executable, "-c", _TRIAL], input=data, capture_output=True,
                              timeout=TRIAL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(f"{path}: TensorFlow Lite Micro did not load and run it once within "
                             f"{TRIAL_TIMEOUT_S} s") from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise ModelLoadError(f"{path}: TensorFlow Lite Micro aborted the process ({name}) loading or running it "
                             f"once; one of its kernels does not handle this model's shapes")


class TFLMSession:
    """One TFLM interpreter on one model (batch 1: a microcontroller's input tensor holds one image)."""

    backend = "tflm"
    thread_safe = False

    def __init__(self, path: Path, threads: int | None = None, data: bytes | None = None):
        self.path, self.threads = Path(path), threads
        self._data = data if data is not None else read_model_file(self.path)
        self.embedded = parse_embedded(read_tflite_metadata(self._data, str(path)).get(EMBEDDED_KEY), str(path))
        runtime = _runtime()
        survives(self._data, self.path)
        with captured_native(2) as log:
            try:
                self._interpreter = runtime.Interpreter.from_bytes(self._data)
            except Exception as exc:  # the wheel raises RuntimeError; its reasons went to stderr
                error = exc
            else:
                error = None
        if error is not None:
            raise ModelLoadError(f"{path}: TensorFlow Lite Micro cannot run it: {refusal(log.text, error)}")
        self.implementation = probe_tflm() or "tflite-micro"
        inp, out = self._interpreter.get_input_details(0), self._interpreter.get_output_details(0)
        self.input_dtype, self.input_shape = np.dtype(inp["dtype"]), tuple(int(d) for d in inp["shape"])
        if len(self.input_shape) != 4:
            raise ModelLoadError(f"{path}: expected an NHWC image input, got shape {self.input_shape}")
        self.layout = image_layout(self.input_shape)
        self._in_q = _scale(inp)
        self._out_q = _scale(out)
        self.output_dtype = np.dtype(out["dtype"])
        self.arena_bytes = self._arena_bytes()
        self.flash_bytes = len(self._data) + RUNTIME_FLASH_BYTES
        self.io_bytes = sum(int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize for d in (inp, out))

    def _arena_bytes(self) -> int | None:
        """The tensor arena TFLM allocated for this model (its recording allocator's total)."""
        with captured_native(2) as printed:  # MicroPrintf writes to stderr
            self._interpreter.print_allocations()
        found = _ARENA.search(printed.text)
        return int(found.group(1)) if found else None

    @property
    def model_bytes(self) -> bytes:
        return self._data

    @property
    def quantization(self) -> dict[str, Any]:
        found = {}
        for side, q in (("input", self._in_q), ("output", self._out_q)):
            if q is not None:
                found[f"{side}_scale"], found[f"{side}_zero_point"] = q[0], int(q[1])
        return found

    @property
    def raw_integer_output(self) -> bool:
        return self.output_dtype.kind in "iu" and self._out_q is None

    def set_output_quantization(self, scale: float, zero_point: float) -> None:
        self._out_q = (float(scale), float(zero_point))

    def clone(self) -> "TFLMSession":
        return TFLMSession(self.path, self.threads, self._data)

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        if self.input_dtype.kind in "iu" and self._in_q is not None:
            scale, zero = self._in_q
            if self.input_dtype == np.uint8 and scale == 1.0 and zero == 0:
                return batch.astype(np.uint8, copy=False)
            return quantize(batch, self.input_dtype, scale, int(zero))
        return batch.astype(self.input_dtype, copy=False)

    def run_prepared(self, tensor: np.ndarray) -> np.ndarray:
        outputs = []
        for image in tensor:
            self._interpreter.set_input(image[None], 0)
            self._interpreter.invoke()
            outputs.append(self.dequantize(np.asarray(self._interpreter.get_output(0))))
        return np.concatenate(outputs)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_prepared(self.prepare(batch))

    def dequantize(self, out: np.ndarray) -> np.ndarray:
        if out.dtype.kind in "iu" and self._out_q is not None:
            scale, zero = self._out_q
            return (out.astype(np.float32) - np.float32(zero)) * np.float32(scale)
        return out.astype(np.float32, copy=False)


def _scale(details: dict) -> tuple[float, float] | None:
    """(scale, zero point) of a quantized tensor, None for a float one."""
    params = details.get("quantization_parameters") or {}
    scales, zeros = params.get("scales"), params.get("zero_points")
    if scales is None or not len(scales) or float(scales[0]) == 0.0:
        return None
    return float(scales[0]), float(zeros[0]) if zeros is not None and len(zeros) else 0.0
