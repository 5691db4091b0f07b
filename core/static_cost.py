"""What an artifact costs before it runs, read from its graph: parameters, multiply-adds, weight bytes and peak
activation memory. A microcontroller's tensor arena and a phone's memory budget are set by these, not by latency.

- TFLite: the FlatBuffer (core/tflite_graph.py). Multiply-adds of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
  TRANSPOSE_CONV and BATCH_MATMUL from the static shapes; parameters are the weights and biases of those ops
  (a float16 model's weights are reached through their DEQUANTIZE); weight bytes are every constant's data.
- ONNX: onnx-tool's profile of the shape-inferred graph: its parameter count, its multiply-adds of the same
  op kinds (Conv, Gemm, MatMul and their integer forms), and its memory planner's activation arena.
- Peak activation memory. TFLite: the largest sum of tensors alive at once when ops run in the stored order
  (a tensor lives from the op that makes it to the last op that reads it): what an arena planner must at
  least reserve (TFLite's own adds alignment). ONNX: onnx-tool's first-fit arena over the graph as stored,
  whose layout transposes and, in QDQ int8, dequantized copies ONNX Runtime would fuse away count too.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .records import StaticCost
from .tflite_graph import TFLiteGraph, read_model

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL")
# the ONNX ops whose multiply-adds count (onnx-tool also counts element-wise ops; the published figures do not)
ONNX_MULTIPLY_OPS = ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "Gemm", "MatMul", "MatMulInteger",
                     "QLinearMatMul")


def static_cost(path: str | Path) -> StaticCost | None:
    """The artifact's static cost by its file format; None for formats without a graph we read (keras, ...).
    A graph the reader cannot take gives a record with the reason, never an exception: export goes on."""
    path = Path(path)
    reader = {".tflite": lambda p: tflite_cost(p.read_bytes()), ".onnx": onnx_cost}.get(path.suffix)
    if reader is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # onnx-tool warns for every op kind it has no profiler for
            return reader(path)
    except Exception as exc:  # a tool that cannot read a graph must not lose the export's other figures
        first = (str(exc).splitlines() or [""])[0][:200]
        return StaticCost(file_bytes=path.stat().st_size, error=f"{type(exc).__name__}: {first}")


def tflite_cost(model: bytes) -> StaticCost:
    graph = read_model(model)
    tensors = graph.tensors
    constant = {i for i, t in tensors.items() if t.const_bytes}
    for op in graph.ops:  # float16 weights are stored as constants that a DEQUANTIZE widens once
        if op.name == "DEQUANTIZE" and op.inputs and op.inputs[0] in constant:
            constant.update(op.outputs)
    weights, macs = {}, 0
    for op in graph.ops:
        if op.name not in WEIGHTED_OPS:
            continue
        macs += _tflite_macs(op, tensors)
        for index in op.inputs[1:] if op.name != "TRANSPOSE_CONV" else op.inputs[1:2] + op.inputs[3:]:
            if index >= 0 and index in constant:
                weights[_source(index, graph)] = tensors[_source(index, graph)].elements
    return StaticCost(params=int(sum(weights.values())), macs=int(macs),
                      weight_bytes=int(sum(t.const_bytes for t in tensors.values() if t.const_bytes)),
                      peak_activation_bytes=int(_peak(graph, constant)), file_bytes=len(model),
                      method="tflite flatbuffer (core/static_cost.py)")


def _tflite_macs(op, tensors) -> int:
    out = tensors[op.outputs[0]]
    if op.name == "CONV_2D":  # filter [out_c, kh, kw, in_c / groups]
        _, kh, kw, cin = tensors[op.inputs[1]].shape
        return out.elements * kh * kw * cin
    if op.name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, out_c]
        _, kh, kw, _ = tensors[op.inputs[1]].shape
        return out.elements * kh * kw
    if op.name == "FULLY_CONNECTED":  # filter [out, in]
        return out.elements * tensors[op.inputs[1]].shape[-1]
    if op.name == "TRANSPOSE_CONV":  # inputs: output shape, filter [out_c, kh, kw, in_c], input
        cout, kh, kw, _ = tensors[op.inputs[1]].shape
        return tensors[op.inputs[2]].elements * kh * kw * cout
    return out.elements * tensors[op.inputs[0]].shape[-1]  # BATCH_MATMUL: each output sums over K


def _source(index: int, graph: TFLiteGraph) -> int:
    """The stored constant behind INDEX (itself, or the input of the DEQUANTIZE that made it)."""
    for op in graph.ops:
        if op.name == "DEQUANTIZE" and index in op.outputs and op.inputs and graph.tensors[op.inputs[0]].const_bytes:
            return op.inputs[0]
    return index


def _peak(graph: TFLiteGraph, constant: set[int]) -> float:
    end = len(graph.ops)
    born = {i: -1 for i in graph.inputs}
    last = {i: end for i in graph.outputs}
    for step, op in enumerate(graph.ops):
        for index in op.outputs:
            born.setdefault(index, step)
        for index in op.inputs:
            if index >= 0:
                last[index] = max(last.get(index, step), step)
    live = [i for i in born if i not in constant]
    peak = 0.0
    for step in range(end):
        peak = max(peak, sum(graph.tensors[i].nbytes for i in live if born[i] <= step <= last.get(i, born[i])))
    return peak


def onnx_cost(path: Path) -> StaticCost:
    """onnx-tool's profile of the model with its dynamic dimensions (the batch) set to 1: its MACs, parameter
    count and, from its memory planner (`compress_memory`), the activation arena. Of the graph as stored: a QDQ
    int8 graph's dequantized copies count, though ONNX Runtime fuses most of them when it runs."""
    import numpy as np
    import onnx_tool
    from edgeship.runtime.backends import refuse_onnx_external_data

    refuse_onnx_external_data(path.read_bytes(), str(path))  # onnx-tool would read it from beside the model
    model = onnx_tool.Model(str(path), {"verbose": False})
    graph = model.graph
    feeds = {}
    for name in graph.input:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in graph.tensormap[name].get_shape()]
        feeds[name] = np.zeros(shape, dtype=np.float32)
    graph.shape_infer(feeds)
    graph.profile()
    _, arena = graph.compress_memory()
    weights = sum(int(graph.tensormap[name].get_memsize()) for name in graph.initials)
    macs = sum(float(node.macs[0]) for node in graph.nodemap.values() if node.op_type in ONNX_MULTIPLY_OPS)
    return StaticCost(params=int(graph.params), macs=int(macs), weight_bytes=weights,
                      peak_activation_bytes=int(arena), file_bytes=path.stat().st_size,
                      method=f"onnx-tool {_version('onnx-tool')} (graph as stored)")


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"
