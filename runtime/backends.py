"""Interpreter backends, one registry row each. A session takes NHWC pixels (0-255) and returns float
outputs; it quantizes inputs and dequantizes outputs with the model's own scale and zero-point."""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import ModelLoadError, UsageError
from .quiet import quiet_native_stderr
from .fileio import NotRegularFile, read_regular_file
from .spec import EMBEDDED_KEY, MAX_ARTIFACT_BYTES
from .tflite_metadata import read_tflite_metadata

# First importable wins: ai-edge-litert is the maintained successor of tflite-runtime.
TFLITE_INTERPRETERS = (
    ("ai_edge_litert.interpreter", "ai_edge_litert"),
    ("tflite_runtime.interpreter", "tflite_runtime"),
    ("tensorflow.lite", "tensorflow.lite"),
)
ONNX_PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def _quantize(batch: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    info = np.iinfo(dtype)
    values = np.round(batch.astype(np.float32) / scale + zero_point)
    return np.clip(values, info.min, info.max).astype(dtype)


def _parse_embedded(raw: bytes | str | None, source: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{source}: embedded edgeship metadata is not valid JSON ({exc})") from exc


class TFLiteSession:
    """One TFLite interpreter. Interpreters are not thread-safe: `clone()` gives another one for another
    thread from the same model bytes (Classifier does this for you)."""

    backend = "tflite"
    thread_safe = False

    def __init__(self, path: Path, threads: int | None = None, data: bytes | None = None):
        self.path = Path(path)
        self.threads = threads
        self._data = data if data is not None else read_model_file(self.path)
        self.embedded = _parse_embedded(read_tflite_metadata(self._data, str(path)).get(EMBEDDED_KEY), str(path))
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
            raise ModelLoadError(f"{path}: TFLite interpreter cannot load it ({_first_line(exc)})") from exc
        if len(self.input_shape) != 4:
            raise ModelLoadError(f"{path}: expected an NHWC image input, got shape {self.input_shape}")
        self.layout = image_layout(self.input_shape)
        self.output_shape = tuple(int(d) for d in out["shape"])
        self._in_quantized = self.input_dtype.kind in "iu" and self._in_scale > 0
        self._out_quantized = out_dtype.kind in "iu" and self._out_scale > 0
        self.output_dtype = out_dtype
        self.raw_integer_output = out_dtype.kind in "iu" and not self._out_quantized  # no scale: not probabilities
        # Pixels are uint8: quantizing them is a 256-entry table, often the identity (scale 1, zero-point 0).
        self._pixel_table = (_quantize(np.arange(256, dtype=np.uint8), self.input_dtype, self._in_scale, int(self._in_zero))
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
            tensor = _quantize(batch, self.input_dtype, self._in_scale, int(self._in_zero))
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
            raise ModelLoadError(f"{self.path}: TFLite interpreter cannot run it ({_first_line(exc)})") from exc
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


ONNX_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "tensorrt": "TensorrtExecutionProvider"}


def onnx_providers(requested: str | None = None) -> list[str]:
    """The provider list for a session: the one asked for (with CPU as fallback), or the best available."""
    ort = _import_or_explain("onnxruntime", "onnxruntime")
    available = ort.get_available_providers()
    if requested:
        name = ONNX_PROVIDERS.get(requested.lower(), requested)
        if name not in available:
            short = ", ".join(k for k, v in ONNX_PROVIDERS.items() if v in available)
            raise UsageError(f"ONNX Runtime provider {requested!r} is not available here (available: {short})")
        return list(dict.fromkeys([name, "CPUExecutionProvider"]))
    preference = list(ONNX_PROVIDER_PREFERENCE)
    if importlib.util.find_spec("tensorrt") is None:  # the TensorRT provider is listed even without its libraries
        preference.remove("TensorrtExecutionProvider")
    return [p for p in preference if p in available]


class OnnxSession:
    """One ONNX Runtime session; ONNX Runtime sessions may be run from several threads at once."""

    backend = "onnxruntime"
    thread_safe = True

    def __init__(self, path: Path, threads: int | None = None, provider: str | None = None, data: bytes | None = None):
        """DATA: the model's bytes when the caller already read (and checked) them; else PATH is read once."""
        self.path = Path(path)
        ort = _import_or_explain("onnxruntime", "onnxruntime")
        data = data if data is not None else read_model_file(self.path)
        refuse_onnx_external_data(data, str(path))
        self._data = data
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        providers = onnx_providers(provider)
        try:
            self._session = ort.InferenceSession(data, sess_options=options, providers=providers)
            meta = self._session.get_modelmeta().custom_metadata_map
            inp, out = self._session.get_inputs()[0], self._session.get_outputs()[0]
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load it ({_first_line(exc)})") from exc
        self.provider = self._session.get_providers()[0]
        self.implementation = f"onnxruntime {ort.__version__} ({self.provider})"
        self.embedded = _parse_embedded(meta.get(EMBEDDED_KEY), str(path))
        self._in_name, self._out_name = inp.name, out.name
        self.input_dtype = np.dtype({"tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
                                     "tensor(float16)": np.float16}.get(inp.type, np.float32))
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in inp.shape)
        if len(self.input_shape) != 4:
            raise ModelLoadError(f"{path}: expected an NHWC or NCHW image input, got shape {inp.shape}")
        self.layout = image_layout(self.input_shape)
        self.output_shape = tuple(d if isinstance(d, int) else -1 for d in out.shape)
        self.metadata_props = dict(meta)
        self._fixed_batch = self.input_shape[0] if self.input_shape[0] > 0 else None
        self.output_dtype = np.dtype(INTEGER_TENSOR_TYPES.get(out.type, np.float32))
        # An integer output (`tf2onnx --tflite` of a full-int8 model) means nothing without its scale: from the
        # model's metadata_props or a QuantizeLinear that makes it, else the user gives it (--output-scale).
        self._output_quantization = (_onnx_output_quantization(self.metadata_props, data, out.name, str(path))
                                     if self.output_dtype.kind in "iu" else None)

    @property
    def model_bytes(self) -> bytes:
        return self._data

    @property
    def raw_integer_output(self) -> bool:
        return self.output_dtype.kind in "iu" and self._output_quantization is None

    def set_output_quantization(self, scale: float, zero_point: float) -> None:
        self._output_quantization = (float(scale), float(zero_point))

    def clone(self) -> "OnnxSession":
        return self

    @property
    def quantization(self) -> dict[str, Any]:
        return {}

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        """NHWC pixels -> the input tensor in the model's dtype and layout (NCHW for many ONNX models)."""
        return to_layout(batch.astype(self.input_dtype, copy=False), self.layout)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Float outputs for a batch of 0-255 pixels."""
        return self.run_prepared(self.prepare(batch))

    def run_prepared(self, tensor: np.ndarray) -> np.ndarray:
        """Float outputs for a batch already in the model's input dtype and layout (see prepare)."""
        if self._fixed_batch is not None and tensor.shape[0] != self._fixed_batch:
            return np.concatenate([self.run_prepared(tensor[i : i + 1]) for i in range(tensor.shape[0])])
        return self.dequantize(self._session.run([self._out_name], {self._in_name: tensor})[0])

    def dequantize(self, out: np.ndarray) -> np.ndarray:
        """The output tensor as float scores (an integer output through its scale and zero-point)."""
        if self._output_quantization is not None:
            scale, zero_point = self._output_quantization
            return (out.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
        return out.astype(np.float32, copy=False)


_EXTERNAL_LOCATION = b"\x0a\x08location"  # a TensorProto.external_data entry's key, as protobuf encodes it


def onnx_external_data(data: bytes) -> str | None:
    """The location of the first initializer an ONNX model keeps outside itself, or None. A model given as
    bytes has its external data resolved against the current directory, so `location: ../.aws/credentials`
    would be read as weights (and come back as scores): edgeship refuses external data altogether. The key's
    bytes must be there for any external data; `onnx` (where installed) confirms and names the file."""
    if _EXTERNAL_LOCATION not in data:
        return None
    try:
        import onnx
        from onnx.external_data_helper import uses_external_data
    except ImportError:
        return "an initializer's external file"
    try:
        model = onnx.ModelProto.FromString(data)
    except Exception:
        return "an initializer's external file"
    graphs, found = [model.graph], None
    while graphs and found is None:
        graph = graphs.pop()
        for tensor in list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]:
            if uses_external_data(tensor):
                found = next((e.value for e in tensor.external_data if e.key == "location"), "?")
                break
        graphs += [a.g for n in graph.node for a in n.attribute if a.HasField("g")]
    return found


def refuse_onnx_external_data(data: bytes, source: str) -> None:
    location = onnx_external_data(data)
    if location is not None:
        raise ModelLoadError(f"{source}: keeps weights outside the file ({str(location)[:120]!r}); edgeship loads "
                             f"only self-contained ONNX models: save it with onnx.save(model, path, "
                             f"save_as_external_data=False)")


INTEGER_TENSOR_TYPES = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8}
OUTPUT_SCALE_KEYS = ("output_scale", "output_zero_point")  # metadata_props that give an integer output's scale


def _onnx_output_quantization(props: dict, data: bytes, output: str, source: str) -> tuple[float, float] | None:
    """(scale, zero point) of an integer output: metadata_props output_scale / output_zero_point, else the
    constant scale and zero point of the QuantizeLinear node that makes it (read with the `onnx` package
    where it is installed: on a board it may not be), else None."""
    scale_key, zero_key = OUTPUT_SCALE_KEYS
    if scale_key in props:
        try:
            return float(props[scale_key]), float(props.get(zero_key, 0))
        except ValueError:
            raise ModelLoadError(f"{source}: metadata_props {scale_key}={props[scale_key]!r} is not a number") from None
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return None
    try:
        graph = onnx.load_from_string(data).graph
    except Exception:  # ONNX Runtime loaded it; a parse failure here only means the scale stays unknown
        return None
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and output in node.output and len(node.input) >= 2:
            scale = constants.get(node.input[1])
            zero = constants.get(node.input[2]) if len(node.input) > 2 else np.zeros(())
            if scale is not None and zero is not None and scale.size == 1 and zero.size == 1:
                return float(scale.reshape(())), float(zero.reshape(()))
    return None


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


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@dataclass(frozen=True)
class Backend:
    name: str
    suffixes: tuple[str, ...]
    open: Callable[..., Any]
    probe: Callable[[], str | None]  # the implementation that would be used, or None


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


def _probe_tflite() -> str | None:
    try:
        return _tflite_interpreter()[1]
    except ModelLoadError:
        return None


def _probe_openvino() -> str | None:
    try:
        return f"openvino {importlib.import_module('openvino').__version__.split('-')[0]}"
    except Exception:
        return None


def _open_openvino(path: Path, threads: int | None = None, data: bytes | None = None, **_):
    """OpenVINO computes; the file's own runtime (opened first) describes its input, output and labels. Both
    read the same bytes (DATA, or PATH read once)."""
    from .openvino_backend import OpenVinoSession

    own = NATIVE.get(Path(path).suffix.lower())
    if own is None or Path(path).suffix.lower() == ".ort":
        raise ModelLoadError(f"{path}: OpenVINO reads .tflite and .onnx files")
    native = BACKENDS[own].open(Path(path), threads=threads, data=data)
    return OpenVinoSession(path, native, threads)


def _probe_onnx() -> str | None:
    try:
        return f"onnxruntime {importlib.import_module('onnxruntime').__version__}"
    except Exception:
        return None


def _import_or_explain(module: str, package: str):
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


BACKENDS: dict[str, Backend] = {
    "tflite": Backend("tflite", (".tflite",), TFLiteSession, _probe_tflite),
    "onnxruntime": Backend("onnxruntime", (".onnx", ".ort"), OnnxSession, _probe_onnx),  # .ort: its mobile format
    # OpenVINO reads the .tflite and .onnx files the other two run; chosen by name only (--backend openvino)
    "openvino": Backend("openvino", (), _open_openvino, _probe_openvino),
}
NATIVE = {".tflite": "tflite", ".onnx": "onnxruntime", ".ort": "onnxruntime"}  # a file's own runtime, by suffix


def backend_for(path: Path, name: str = "auto") -> Backend:
    """Pick the backend by name, or by file suffix when name is 'auto'."""
    if name != "auto":
        try:
            return BACKENDS[name]
        except KeyError as exc:
            raise UsageError(f"unknown backend {name!r}; choose from auto, {', '.join(BACKENDS)}") from exc
    suffix = Path(path).suffix.lower()
    for backend in BACKENDS.values():
        if suffix in backend.suffixes:
            return backend
    known = ", ".join(s for b in BACKENDS.values() for s in b.suffixes)
    raise ModelLoadError(f"{path}: unknown model file type {suffix!r}; expected one of {known}")
