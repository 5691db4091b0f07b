"""Keras -> ONNX through tf2onnx (dynamic batch, input named `image`), and int8 ONNX through
onnxruntime.quantization: static QDQ per-channel calibrated on the calib split, or dynamic."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from edgeship.core.tfenv import import_keras

OPSET = 17


def float32(job) -> bytes:
    tf, _ = import_keras()
    import tf2onnx

    height, width = job.info.input.height, job.info.input.width
    signature = (tf.TensorSpec((None, height, width, 3), tf.float32, name="image"),)
    model_proto, _ = tf2onnx.convert.from_keras(job.model, input_signature=signature, opset=OPSET)
    return model_proto.SerializeToString()


class _CalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over the calib images, one at a time."""

    def __init__(self, images: np.ndarray, input_name: str):
        self._items = iter([{input_name: image[None].astype(np.float32)} for image in images])

    def get_next(self):
        return next(self._items, None)

    def rewind(self):  # some onnxruntime versions call it
        pass


def _quantize(job, static: bool) -> bytes:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        source, prepared, output = Path(tmp, "float.onnx"), Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        source.write_bytes(float32(job))
        quant_pre_process(str(source), str(prepared))
        if static:
            input_name = onnx.load(str(prepared)).graph.input[0].name
            quantize_static(str(prepared), str(output), _CalibrationReader(job.calibration, input_name),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8)
        else:
            quantize_dynamic(str(prepared), str(output), weight_type=QuantType.QInt8)
        return output.read_bytes()


def static_int8(job) -> bytes:
    return _quantize(job, static=True)


def dynamic_int8(job) -> bytes:
    return _quantize(job, static=False)
