"""int8 activations of a QDQ ONNX model made uint8, exactly: a QuantizeLinear with int8 zero point z gives q, the
same with uint8 zero point z + 128 gives q + 128, and DequantizeLinear subtracts the same zero point back. tf2onnx
writes a TFLite model's int8 activations as they are (S8S8), and ONNX Runtime on x86 runs uint8 activations with
int8 weights (U8S8) fastest: the QAT MobileNetV2 of the README went from 0.27 to 0.15 ms at 1 thread. Weights
(DequantizeLinear of an int8 initializer) and int32 biases stay as they are."""

from __future__ import annotations

import numpy as np

# ops between a QuantizeLinear and the DequantizeLinear that reads it which move int8 values without changing them
MOVES_VALUES = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "MaxPool", "Flatten")


def activations_to_uint8(model):
    """MODEL (an onnx ModelProto, changed in place and returned) with every int8 QuantizeLinear, and each
    DequantizeLinear that reads one, on a uint8 zero point of its own."""
    from onnx import numpy_helper

    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    shifted: dict[str, str] = {}  # a QuantizeLinear's output -> its new uint8 zero point
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3 or node.input[2] not in constants:
            continue
        zero = numpy_helper.to_array(constants[node.input[2]])
        if zero.dtype != np.int8:
            continue
        name = f"{node.input[2]}_uint8_{len(shifted)}"
        graph.initializer.append(numpy_helper.from_array((zero.astype(np.int16) + 128).astype(np.uint8), name))
        node.input[2] = shifted[node.output[0]] = name
    producer = {output: node for node in graph.node for output in node.output}

    def quantized_by(tensor: str) -> str:
        while tensor in producer and producer[tensor].op_type in MOVES_VALUES:
            tensor = producer[tensor].input[0]
        return tensor

    for node in graph.node:
        if node.op_type == "DequantizeLinear" and quantized_by(node.input[0]) in shifted:
            node.input[2] = shifted[quantized_by(node.input[0])]
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:  # the int8 zero points nothing reads any more
        graph.initializer.remove(init)
    return model
