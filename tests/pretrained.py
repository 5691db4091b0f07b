"""Real ImageNet weights without a download: Google Coral's int8 MobileNetV2 (tests/data/coral, Apache-2.0, from the
public google-coral/test_data repository) dequantized into keras.applications.MobileNetV2.

The TFLite model has each BatchNormalization folded into the convolution before it (weights `.../Conv2D_Fold`,
bias `.../BatchNorm_Fold/bias`), so a Keras convolution gets the folded kernel and its BatchNormalization becomes
"add the folded bias" (gamma 1, mean 0, variance 1 - epsilon). The logits convolution is returned apart, so a test
can check that the Keras model classifies photos as the TFLite model does.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

CORAL = Path(__file__).parent / "data" / "coral"
MOBILENET_V2_TFLITE = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
_BLOCK = re.compile(r"MobilenetV2/(Conv|Conv_1|expanded_conv(?:_(\d+))?/(expand|depthwise|project))/")


def _keras_names(scope: str) -> tuple[str, str]:
    """(conv layer, BatchNormalization layer) of keras.applications.MobileNetV2 for a TF-slim scope."""
    match = _BLOCK.match(scope + "/")
    if match.group(1) == "Conv":
        return "Conv1", "bn_Conv1"
    if match.group(1) == "Conv_1":
        return "Conv_1", "Conv_1_bn"
    block, part = match.group(2), match.group(3)
    prefix = "expanded_conv" if block is None else f"block_{block}"
    return f"{prefix}_{part}", f"{prefix}_{part}_BN"


def _dequantized(interpreter, detail) -> np.ndarray:
    values = interpreter.get_tensor(detail["index"]).astype(np.float32)
    quant = detail["quantization_parameters"]
    scales, zeros, axis = quant["scales"], quant["zero_points"], quant["quantized_dimension"]
    shape = [1] * values.ndim
    if scales.size > 1:
        shape[axis] = -1
    return (values - zeros.reshape(shape).astype(np.float32)) * scales.reshape(shape)


def coral_tensors(path: Path = MOBILENET_V2_TFLITE) -> tuple[dict, dict]:
    """({scope: folded kernel as stored}, {scope: folded bias}) of the Coral model, dequantized."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    kernels, biases = {}, {}
    for detail in interpreter.get_tensor_details():
        first, last = detail["name"].split(";")[0], detail["name"].split(";")[-1]
        if first.endswith(("Conv2D_Fold", "depthwise_Fold")) and detail["dtype"] == np.uint8:
            kernels[first.rsplit("/", 1)[0]] = _dequantized(interpreter, detail)
        elif last.endswith("BatchNorm_Fold/bias") and detail["dtype"] == np.int32:
            biases[last.rsplit("/", 2)[0]] = _dequantized(interpreter, detail)
        elif first.startswith("MobilenetV2/Logits/Conv2d_1c_1x1/Conv2D") and detail["dtype"] == np.uint8:
            kernels["Logits"] = _dequantized(interpreter, detail)
        elif first.startswith("MobilenetV2/Logits/Conv2d_1c_1x1/BiasAdd") and detail["dtype"] == np.int32:
            biases["Logits"] = _dequantized(interpreter, detail)
    return kernels, biases


def dequantized_mobilenet_v2(input_size: int = 224):
    """(keras.applications.MobileNetV2 α 1.0 without top, with the Coral model's weights; logits kernel
    (1280, 1001); logits bias (1001,)). Class 0 of the logits is TF-slim's `background`."""
    from edgeship.core.tfenv import import_keras

    _, keras = import_keras()
    model = keras.applications.MobileNetV2(input_shape=(input_size, input_size, 3), alpha=1.0, include_top=False,
                                           weights=None, pooling=None)
    kernels, biases = coral_tensors()
    assigned = 0
    for scope, kernel in kernels.items():
        if scope == "Logits":
            continue
        conv_name, bn_name = _keras_names(scope)
        conv, bn = model.get_layer(conv_name), model.get_layer(bn_name)
        conv.set_weights([kernel.transpose(1, 2, 3, 0)])  # TFLite OHWI (depthwise 1HWC) -> Keras HWIO (HWC1)
        bias = biases[scope]
        bn.set_weights([np.ones_like(bias), bias, np.zeros_like(bias), np.full_like(bias, 1.0 - bn.epsilon)])
        assigned += 1
    convs = [layer for layer in model.layers if layer.__class__.__name__ in ("Conv2D", "DepthwiseConv2D")]
    assert assigned == len(convs) == 52, (assigned, len(convs))
    return model, kernels["Logits"].reshape(1001, 1280).T, biases["Logits"]


def save_backbone_weights(path: Path, input_size: int = 224) -> Path:
    """The dequantized backbone as a Keras weights file, for `--weights FILE` (what `imagenet` downloads)."""
    model, _, _ = dequantized_mobilenet_v2(input_size)
    model.save_weights(str(path))
    return path
