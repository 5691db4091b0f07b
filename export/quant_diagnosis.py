"""Which layers does int8 hurt, and why? Per-layer quantization error from the vendors' debuggers.

- TFLite: `tf.lite.experimental.QuantizationDebugger`, RMSE/scale per quantized tensor (the error in units of
  the tensor's int8 step: about 0.29 is the rounding floor, above 0.7 is suspect).
- ONNX: `onnxruntime.quantization.qdq_loss_debug`: the SQNR of each activation between the float model and
  the QDQ model. Each layer is charged with the noise it adds (its output's relative noise minus its inputs'),
  given back as an SQNR in dB: low is bad.
Each layer carries a hint for the known causes (an outlier channel or large range, hard-swish, swish,
squeeze-excite) and the nodes to keep in float to take it out of int8 (`keep_float`: the layer and the
nodes that produce its input, back to the previous compute op, so the activation it reads stays float too).
The images are the validation (or calib) split's: never the test split's.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .onnx_convert import ImageReader

# Where a keep-float walk stops: ops that make a new activation range. Pooling, reshapes and means pass the
# range they read through, so the walk goes on to what produced it.
TFLITE_COMPUTE = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL", "ADD", "MUL",
                  "SUB", "CONCATENATION", "QUANTIZE", "HARD_SWISH", "LOGISTIC", "SOFTMAX"}
ONNX_COMPUTE = {"Conv", "Gemm", "MatMul", "ConvTranspose", "Add", "Mul", "Concat",
                "HardSwish", "Sigmoid", "HardSigmoid", "Softmax"}
SUSPECT_RMSE_SCALE = 0.7  # TFLite's quantization debugger guide: ~0.29 is ideal, above 0.7 is suspect
LARGE_RANGE = 10.0  # an input step this many times the median step: an outlier channel or a large range
MAX_WALK = 8


@dataclass
class LayerError:
    name: str
    op: str
    error: float
    metric: str
    hint: str | None = None
    keep_float: list[str] = field(default_factory=list)  # node ids to leave in float to take this layer out of int8
    worse: float = 0.0  # sort key: larger is worse, whatever the metric's direction

    def to_json(self) -> dict:
        return {"name": self.name, "op": self.op, "error": _finite(self.error), "metric": self.metric,
                "hint": self.hint, "keep_float": self.keep_float}


def _finite(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


@dataclass
class _Node:
    id: str  # what the quantizer's exclusion list takes: TFLite output tensor name, ONNX node name
    op: str
    inputs: list[str]
    outputs: list[str]


class _Graph:
    def __init__(self, nodes: list[_Node], compute_ops: set[str]):
        self.nodes = nodes
        self.producer = {out: node for node in nodes for out in node.outputs}
        self.compute_ops = compute_ops

    def keep_float(self, layer: list[_Node]) -> list[str]:
        """The LAYER's nodes and the nodes that produce its activation inputs, each path back to its first
        compute op: leaving only the layer in float would still feed it an int8-rounded input."""
        chosen, frontier = [node.id for node in layer], [(node, 0) for node in layer]
        while frontier:
            current, depth = frontier.pop()
            if depth >= MAX_WALK:
                continue
            for tensor in current.inputs:
                producer = self.producer.get(tensor)
                if producer is None or producer.id in chosen:
                    continue
                chosen.append(producer.id)
                if producer.op not in self.compute_ops:
                    frontier.append((producer, depth + 1))
        return chosen

    def consumers(self, tensor: str) -> list[_Node]:
        return [node for node in self.nodes if tensor in node.inputs]


def _op_hint(graph: _Graph, group: list[str]) -> str | None:
    """Known int8 troublemakers by op type among the nodes of GROUP."""
    members = [n for n in graph.nodes if n.id in group]
    if {n.op for n in members} & {"HARD_SWISH", "HardSwish"}:
        return "hard-swish: its int8 form is coarse around 0; keep it float or use 16-bit activations"
    for member in (n for n in members if n.op in ("LOGISTIC", "Sigmoid", "HardSigmoid")):
        for consumer in graph.consumers(member.outputs[0]):
            if consumer.op in ("MUL", "Mul"):
                other = [t for t in consumer.inputs if t != member.outputs[0]]
                if other and other[0] in member.inputs:
                    return "swish (x·sigmoid(x)): a wide, asymmetric range quantizes poorly"
                return "squeeze-excite gate: a per-channel sigmoid scale multiplies the activation"
    return None


def _range_hint(input_step: float | None, output_step: float | None) -> str | None:
    """An activation whose int8 step dwarfs the step of what the layer makes of it: one channel (or a few values)
    set the range, and the rest of the tensor was rounded to a few levels before this layer read it."""
    if input_step and output_step and input_step / output_step >= LARGE_RANGE:
        return (f"outlier channel / large range: its input's int8 step is {input_step / output_step:.0f}× its "
                f"output's, so most of the input's channels get only a few levels")
    return None


def _activation_inputs(graph: _Graph, tensors: list[str]) -> list[str]:
    """TENSORS minus the model's input pixels (and their quantization): their range is the pixels' own."""
    return [t for t in tensors if t in graph.producer and graph.producer[t].op != "QUANTIZE"]


def _ranked(rows: list[LayerError]) -> list[LayerError]:
    return sorted(rows, key=lambda r: -r.worse)


# ---------------------------------------------------------------- TFLite


def tflite_graph(model: bytes) -> tuple[_Graph, dict[str, float]]:
    """Ops of a quantized TFLite model (node id = its first output tensor's name) and each tensor's int8 scale,
    read from the FlatBuffer (core/tflite_graph.py)."""
    from edgeship.core.tflite_graph import read_graph

    ops, tensors = read_graph(model)
    nodes = []
    for op in ops:
        outputs = [tensors[i].name for i in op.outputs if i >= 0]
        inputs = [tensors[i].name for i in op.inputs if i >= 0 and i in tensors]
        nodes.append(_Node(outputs[0] if outputs else f"op{op.index}", op.name, inputs, outputs))
    scales = {t.name: t.scale for t in tensors.values() if t.scale}
    return _Graph(nodes, TFLITE_COMPUTE), scales


def tflite_layers(converter, images: np.ndarray, plain_model: bytes) -> list[LayerError]:
    """QuantizationDebugger over IMAGES with CONVERTER (set up for full int8 with its calibration), worst first."""
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([image[None].astype(np.float32)] for image in images))
    debugger.run()
    text = io.StringIO()
    debugger.layer_statistics_dump(text)
    graph, scales = tflite_graph(plain_model)
    nodes = {node.id: node for node in graph.nodes}
    rows = []
    for stat in csv.DictReader(io.StringIO(text.getvalue())):
        scale, mse = float(stat["scale"]), float(stat["mean_squared_error"])
        rmse_scale = math.sqrt(mse) / scale if scale > 0 else math.inf
        node = nodes.get(stat["tensor_name"])
        group = graph.keep_float([node]) if node else [stat["tensor_name"]]
        inputs = _activation_inputs(graph, node.inputs) if node else []
        input_step = max((scales.get(t, 0.0) for t in inputs), default=None)
        hint = _op_hint(graph, group) or _range_hint(input_step, scale)
        if hint is None and rmse_scale > SUSPECT_RMSE_SCALE:
            hint = f"RMSE/scale {rmse_scale:.2f} > {SUSPECT_RMSE_SCALE}: suspect (≈0.29 is the rounding floor)"
        rows.append(LayerError(stat["tensor_name"].split(";")[0], stat["op_name"], rmse_scale, "rmse/scale", hint, group,
                               worse=rmse_scale))
    return _ranked(rows)


# ---------------------------------------------------------------- ONNX


def onnx_graph(model_path: Path) -> _Graph:
    import onnx

    model = onnx.load(str(model_path))
    constants = {i.name for i in model.graph.initializer}
    nodes = [_Node(node.name, node.op_type, [i for i in node.input if i and i not in constants], list(node.output))
             for node in model.graph.node]
    return _Graph(nodes, ONNX_COMPUTE)


def qdq_steps(qdq_path: Path) -> dict[str, float]:
    """Each quantized activation's int8 step: the scale of the QuantizeLinear that reads it."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq_path))
    initial = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    steps = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[1] in initial:
            scale = np.asarray(initial[node.input[1]])
            if scale.size == 1:
                steps[node.input[0]] = float(scale)
    return steps


SQNR_CHUNK = 8  # images whose activations are held at once: at 224 px all 64 of both models took 5 GB


def onnx_activation_sqnr(float_path: Path, qdq_path: Path, images: np.ndarray,
                         scratch: Path | None = None, chunk: int = SQNR_CHUNK) -> dict[str, float]:
    """qdq_loss_debug's float-vs-QDQ SQNR (dB) of every activation both models expose (its `xmodel_err`), in
    bounded memory: CHUNK images' activations at a time, summing each tensor's signal and noise power (the SQNR
    of the whole set is 10·log10(Σ signal² / Σ noise²), what qdq_loss_debug computes on all images at once)."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug

    input_name = onnx.load(str(float_path)).graph.input[0].name
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgeship-qdq-debug-", dir=scratch) as tmp:
        float_aug, qdq_aug = Path(tmp, "float.onnx"), Path(tmp, "qdq.onnx")
        qdq_loss_debug.modify_model_output_intermediate_tensors(str(float_path), str(float_aug))
        qdq_loss_debug.modify_model_output_intermediate_tensors(str(qdq_path), str(qdq_aug))
        for start in range(0, len(images), chunk):
            part = images[start:start + chunk]
            float_acts = qdq_loss_debug.collect_activations(str(float_aug), ImageReader(part, input_name))
            qdq_acts = qdq_loss_debug.collect_activations(str(qdq_aug), ImageReader(part, input_name))
            matching = qdq_loss_debug.create_activation_matching(qdq_acts, float_acts)
            for name, match in matching.items():
                if not match.get("float") or match.get("post_qdq") is None:
                    continue  # only one of the models has it
                for x, y in zip(match["float"], match["post_qdq"]):
                    x64 = np.asarray(x, dtype=np.float64)
                    signal[name] = signal.get(name, 0.0) + float(np.sum(x64 * x64))
                    noise[name] = noise.get(name, 0.0) + float(np.sum((x64 - y) ** 2))
            del float_acts, qdq_acts, matching
    eps = float(np.finfo("float").eps)
    return {name: 20.0 * math.log10(max(math.sqrt(signal[name]), eps) / max(math.sqrt(noise[name]), eps))
            for name in signal}


def onnx_layers(float_path: Path, qdq_path: Path, images: np.ndarray, scratch: Path | None = None) -> list[LayerError]:
    """Per measured activation: the SQNR of the noise its layer adds (dB, low is bad), worst first."""
    sqnr = onnx_activation_sqnr(float_path, qdq_path, images, scratch)
    graph = onnx_graph(float_path)
    steps = qdq_steps(qdq_path)
    rows = []
    for tensor, db in sqnr.items():
        node = graph.producer.get(tensor)
        if node is None:  # a graph input
            continue
        upstream, walked = _measured_inputs(graph, node, sqnr)
        noise_in = max((_noise(sqnr[t]) for t in upstream), default=0.0)
        added = max(_noise(db) - noise_in, 0.0)
        local_db = -10.0 * math.log10(added) if added > 0 else math.inf
        # the layer: its node and the unmeasured nodes fused into it (the Conv before its Relu)
        group = graph.keep_float([node] + [n for n in graph.nodes if n.id in walked])
        op = "+".join([n.op for n in graph.nodes if n.id in walked] + [node.op])
        input_step = max((steps.get(t, 0.0) for t in _activation_inputs(graph, upstream)), default=None)
        hint = _op_hint(graph, group) or _range_hint(input_step, steps.get(tensor))
        rows.append(LayerError(tensor, op, local_db, "sqnr_db", hint, group, worse=added))
    return _ranked(rows)


def _noise(sqnr_db: float) -> float:
    """Noise power relative to the signal, from an SQNR in dB."""
    return 10.0 ** (-sqnr_db / 10.0)


def _measured_inputs(graph: _Graph, node: _Node, sqnr: dict[str, float]) -> tuple[list[str], list[str]]:
    """The measured tensors NODE reads, looking through producers whose outputs were not measured (and them)."""
    measured, walked, frontier = [], [], list(node.inputs)
    while frontier:
        tensor = frontier.pop()
        if tensor in sqnr:
            measured.append(tensor)
            continue
        producer = graph.producer.get(tensor)
        if producer is not None and producer.id not in walked and len(walked) < MAX_WALK:
            walked.append(producer.id)
            frontier.extend(producer.inputs)
    return measured, walked
