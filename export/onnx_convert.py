"""Keras -> ONNX through tf2onnx (dynamic batch, input named `image`), and int8 ONNX through
onnxruntime.quantization: static QDQ (U8S8) per-channel calibrated on the calib split, or dynamic."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

from edgeship.core.formats import export_format
from edgeship.core.tfenv import import_keras

from .embed import embed_onnx
from .qdq_uint8 import activations_to_uint8
from .readiness import onnx_readiness

ONNX = dict(backend="onnxruntime", embedder=embed_onnx, readiness=onnx_readiness)

OPSET = 17


_TF2ONNX = threading.Lock()  # its node-name counter is one global of the process


@export_format("onnx", "model_float32.onnx", "float32", description="ONNX float32 (tf2onnx)", **ONNX)
def float32(job) -> bytes:
    """The Keras model as float ONNX. tf2onnx names the nodes it adds from a process-wide counter (`mul_1__49`),
    so the same model converted after other conversions got other names, and a quantized model other bytes: the
    counter starts from 1 for every conversion, so the same model gives the same file."""
    tf, _ = import_keras()
    import tf2onnx
    import tf2onnx.utils

    height, width = job.info.input.height, job.info.input.width
    signature = (tf.TensorSpec((None, height, width, 3), tf.float32, name="image"),)
    with _TF2ONNX:
        tf2onnx.utils.INTERNAL_NAME = 1
        model_proto, _ = tf2onnx.convert.from_keras(job.model, input_signature=signature, opset=OPSET)
    return renumbered(model_proto).SerializeToString()


_COUNTER = re.compile(r"__(\d+)(?=$|:|_)")


def renumbered(model):
    """MODEL with tf2onnx's counter suffixes (`__49`) numbered 1, 2, ... in the order the graph first names them.
    The counter also moves with what the converter saw earlier in the process (a first conversion traces more), so
    the same model's names, and its quantized bytes, depended on the conversions before it."""
    graph, order = model.graph, {}

    def names():
        for node in graph.node:
            yield from (node.name, *node.input, *node.output)
        for item in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
            yield item.name

    for name in names():
        for number in _COUNTER.findall(name):
            order.setdefault(number, str(len(order) + 1))

    def fix(name: str) -> str:
        return _COUNTER.sub(lambda m: f"__{order[m.group(1)]}", name)

    for node in graph.node:
        node.name = fix(node.name)
        node.input[:] = [fix(n) for n in node.input]
        node.output[:] = [fix(n) for n in node.output]
    for item in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        item.name = fix(item.name)
    return model


class ImageReader:
    """onnxruntime.quantization.CalibrationDataReader over images, one at a time: calibration, and the
    activations qdq_loss_debug collects. `__len__` and `set_range` let quantize_static calibrate in strides
    (`CalibStridedMinMax`)."""

    def __init__(self, images: np.ndarray, input_name: str):
        self._images, self._input_name = images, input_name
        self.set_range(0, len(images))

    def __len__(self) -> int:
        return len(self._images)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._items = iter(range(start_index, min(end_index, len(self._images))))

    def get_next(self):
        index = next(self._items, None)
        return None if index is None else {self._input_name: self._images[index][None].astype(np.float32)}

    def rewind(self):  # some onnxruntime versions call it
        pass

    def __iter__(self):  # qdq_loss_debug.collect_activations iterates the reader
        return iter(self.get_next, None)


CALIBRATION_STRIDE = 16  # images per calibration pass, at most


def calibration_stride(count: int, most: int = CALIBRATION_STRIDE) -> int:
    """The largest divisor of COUNT up to MOST: quantize_static's strided calibration needs one that divides it.
    The Entropy and Percentile calibrators keep every activation of every image they are given until they make
    their histograms (at 224 px, 126 images of the demo CNN peaked export at 6.4 GB); in strides they hold one
    stride's and merge histograms. MinMax keeps only each tensor's min and max either way."""
    return max(d for d in range(1, min(most, count) + 1) if count % d == 0) if count else 1


def prepared_float_model(job, directory: Path) -> Path:
    """The float ONNX model after `quant_pre_process` (shape inference, folding): what the quantizers read."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, prepared = Path(directory, "float.onnx"), Path(directory, "prepared.onnx")
    source.write_bytes(float32(job))
    quant_pre_process(str(source), str(prepared))
    return prepared


# uint8 activations, int8 weights: on this VNNI CPU QDQ U8S8 runs MobileNetV2 224 at 1 thread 2.06x faster than
# float32, S8S8 only 1.37x (bench/ort_int8_options.py; the README lists every option tried).
ACTIVATIONS = "QUInt8"


def quantize_qdq(prepared: Path, output: Path, calibration: np.ndarray, method: str = "MinMax",
                 per_channel: bool = True, nodes_to_exclude=(), activations: str = ACTIVATIONS) -> bytes:
    """Static QDQ int8 of PREPARED (uint8 activations and int8 weights by default) calibrated on CALIBRATION with
    METHOD (MinMax, Entropy, Percentile), leaving NODES_TO_EXCLUDE in float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    input_name = onnx.load(str(prepared)).graph.input[0].name
    quantize_static(str(prepared), str(output), ImageReader(calibration, input_name),
                    quant_format=QuantFormat.QDQ, per_channel=per_channel, activation_type=QuantType[activations],
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod[method],
                    nodes_to_exclude=list(nodes_to_exclude),
                    extra_options={"CalibStridedMinMax": calibration_stride(len(calibration))})
    return Path(output).read_bytes()


@export_format("onnx_int8", "model_int8.onnx", "int8", needs_calibration=True,
               description="ONNX static QDQ int8 (uint8 activations, int8 weights), per-channel, calibrated on the "
                           "calib split", **ONNX)
def static_int8(job) -> bytes:
    if getattr(job, "qat_model", None) is not None:
        return learned_ranges(job)
    with job.temp_dir("edgeship-onnx-int8-") as tmp:
        return quantize_qdq(job.prepared_onnx(), Path(tmp, "int8.onnx"), job.calibration)


def learned_ranges(job) -> bytes:
    """QDQ ONNX with the scales quantization-aware training learned: tf2onnx reads the full-integer TFLite model
    made from them (float IO), every int8 tensor becoming a QuantizeLinear/DequantizeLinear pair with its scale,
    the activations then moved to uint8 as ONNX Runtime runs fastest (qdq_uint8.py). (tf2onnx's own FakeQuant
    handler takes neither per-channel nor narrow-range weights.)"""
    import tf2onnx
    import tf2onnx.utils

    from .tflite_convert import learned_ranges as tflite_learned_ranges

    with job.temp_dir("edgeship-onnx-qat-") as tmp:
        source = Path(tmp, "qat.tflite")
        source.write_bytes(tflite_learned_ranges(job, "float"))
        with _TF2ONNX:
            tf2onnx.utils.INTERNAL_NAME = 1
            model_proto, _ = tf2onnx.convert.from_tflite(str(source), opset=OPSET)
    return renumbered(activations_to_uint8(model_proto)).SerializeToString()


@export_format("onnx_dynamic", "model_dynamic.onnx", "dynamic-int8", default=False,
               description="ONNX dynamic int8 (slow and lossy for convolutions on CPU; for Dense-heavy models)", **ONNX)
def dynamic_int8(job) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with job.temp_dir("edgeship-onnx-dynamic-") as tmp:
        output = Path(tmp, "int8.onnx")
        quantize_dynamic(str(job.prepared_onnx()), str(output), weight_type=QuantType.QInt8)
        return output.read_bytes()
