"""int8 activations moved to uint8 in a QDQ ONNX model (what tf2onnx writes from a QAT TFLite file) change no
value: ONNX Runtime gives the same outputs, every activation QuantizeLinear is uint8, weights stay int8."""

from __future__ import annotations

import numpy as np


def _qdq_model():
    """image -> Q(int8) -> Transpose -> DQ -> Conv(DQ(int8 weights)) -> Q(int8) -> DQ -> output."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s_in"),
             numpy_helper.from_array(np.array(-7, np.int8), "z_in"),
             numpy_helper.from_array(weights, "w_q"),
             numpy_helper.from_array(np.full(4, 0.01, np.float32), "s_w"),
             numpy_helper.from_array(np.zeros(4, np.int8), "z_w"),
             numpy_helper.from_array(np.array(0.2, np.float32), "s_out"),
             numpy_helper.from_array(np.array(11, np.int8), "z_out")]
    nodes = [helper.make_node("QuantizeLinear", ["image", "s_in", "z_in"], ["q_in"]),
             helper.make_node("Transpose", ["q_in"], ["q_nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("DequantizeLinear", ["q_nchw", "s_in", "z_in"], ["x"]),
             helper.make_node("DequantizeLinear", ["w_q", "s_w", "z_w"], ["w"], axis=0),
             helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "s_out", "z_out"], ["q_y"]),
             helper.make_node("DequantizeLinear", ["q_y", "s_out", "z_out"], ["out"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 8, 8, 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x, optimized: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimized:  # the graph as written: QuantizeLinear, DequantizeLinear and a float Conv
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def test_uint8_activations_give_the_same_outputs_and_leave_weights_int8():
    from onnx import numpy_helper

    from edgeship.export.qdq_uint8 import activations_to_uint8

    x = np.random.default_rng(1).uniform(-6, 6, (1, 8, 8, 3)).astype(np.float32)
    before = _run(_qdq_model(), x)
    moved = activations_to_uint8(_qdq_model())
    constants = {i.name: numpy_helper.to_array(i) for i in moved.graph.initializer}
    quantize = [n for n in moved.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantize) == 2 and all(constants[n.input[2]].dtype == np.uint8 for n in quantize)
    assert [int(constants[n.input[2]]) for n in quantize] == [121, 139]  # z + 128
    weight_dq = next(n for n in moved.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "w_q")
    assert constants[weight_dq.input[2]].dtype == np.int8
    assert {"z_in", "z_out"}.isdisjoint(constants)  # the int8 zero points nothing reads are gone
    # exactly the same levels, shifted by 128; fused into QLinearConv (U8S8 instead of the float path) a value may
    # round to the next level
    np.testing.assert_array_equal(_run(moved, x, optimized=False), _run(_qdq_model(), x, optimized=False))
    assert np.abs(_run(moved, x) - before).max() <= 0.2 + 1e-6 and np.mean(_run(moved, x) != before) < 0.02


def _normalizing_model():
    """image -> Q(int8) -> DQ -> Mul(DQ(int8 1/127.5)) -> Q -> DQ -> Add(DQ(int8 -1)) -> Q -> DQ -> output, the input
    normalization as tf2onnx writes it from a QAT TFLite file, sharing one initializer as a value and a zero point."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(1.0, np.float32), "s_in"),
             numpy_helper.from_array(np.array(-128, np.int8), "minus_128"),
             numpy_helper.from_array(np.array(127, np.int8), "c_127"),
             numpy_helper.from_array(np.array(1 / 127.5 / 255, np.float32), "s_scale"),
             numpy_helper.from_array(np.array(2 / 255, np.float32), "s_mul"),
             numpy_helper.from_array(np.array(1 / 255, np.float32), "s_offset"),
             numpy_helper.from_array(np.array(2 / 255, np.float32), "s_add"),
             numpy_helper.from_array(np.array(0, np.int8), "z_add")]
    nodes = [helper.make_node("QuantizeLinear", ["image", "s_in", "minus_128"], ["q_in"]),
             helper.make_node("DequantizeLinear", ["q_in", "s_in", "minus_128"], ["x"]),
             helper.make_node("DequantizeLinear", ["c_127", "s_scale", "minus_128"], ["scale"]),
             helper.make_node("Mul", ["x", "scale"], ["scaled"]),
             helper.make_node("QuantizeLinear", ["scaled", "s_mul", "minus_128"], ["q_scaled"]),
             helper.make_node("DequantizeLinear", ["q_scaled", "s_mul", "minus_128"], ["scaled_dq"]),
             helper.make_node("DequantizeLinear", ["minus_128", "s_offset", "c_127"], ["offset"]),  # (-128 - 127) / 255
             helper.make_node("Add", ["scaled_dq", "offset"], ["shifted"]),
             helper.make_node("QuantizeLinear", ["shifted", "s_add", "z_add"], ["q_out"]),
             helper.make_node("DequantizeLinear", ["q_out", "s_add", "z_add"], ["out"])]
    graph = helper.make_graph(nodes, "normalize", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 4, 4, 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 4, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_constants_beside_uint8_activations_move_too_so_the_normalization_runs_in_int8(tmp_path):
    """Left int8 beside uint8 activations, the normalization's constants keep ONNX Runtime from fusing Mul and Add
    (they ran in float); moved to uint8 they fuse into QLinearMul/QLinearAdd and every output stays the same."""
    import onnx
    import onnxruntime as ort

    from edgeship.export.qdq_uint8 import activations_to_uint8

    x = np.arange(48, dtype=np.float32).reshape(1, 4, 4, 3) * 5.0  # pixels 0-235
    moved = activations_to_uint8(_normalizing_model())
    np.testing.assert_array_equal(_run(moved, x, optimized=False), _run(_normalizing_model(), x, optimized=False))
    np.testing.assert_allclose(_run(moved, x, optimized=False), x / 127.5 - 1, atol=2 / 255)  # within a step of it
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(moved.SerializeToString(), options, providers=["CPUExecutionProvider"])
    kinds = [node.op_type for node in onnx.load(tmp_path / "optimized.onnx").graph.node]
    assert "QLinearMul" in kinds and "QLinearAdd" in kinds and not {"Mul", "Add"} & set(kinds), kinds
