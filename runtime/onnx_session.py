"""ONNX Runtime sessions (the `.onnx` and `.ort` files): providers, integer outputs' scales, and the refusal of
weights kept outside the file."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError, UsageError
from .session import first_line, image_layout, import_or_explain, parse_embedded, read_model_file, to_layout
from .spec import EMBEDDED_KEY

ONNX_PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ONNX_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "tensorrt": "TensorrtExecutionProvider"}


def onnx_providers(requested: str | None = None) -> list[str]:
    """The provider list for a session: the one asked for (with CPU as fallback), or the best available."""
    ort = import_or_explain("onnxruntime", "onnxruntime")
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
        ort = import_or_explain("onnxruntime", "onnxruntime")
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
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load it ({first_line(exc)})") from exc
        self.provider = self._session.get_providers()[0]
        self.implementation = f"onnxruntime {ort.__version__} ({self.provider})"
        self.embedded = parse_embedded(meta.get(EMBEDDED_KEY), str(path))
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




def probe_onnx() -> str | None:
    try:
        return f"onnxruntime {importlib.import_module('onnxruntime').__version__}"
    except Exception:
        return None
