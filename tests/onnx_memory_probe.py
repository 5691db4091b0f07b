"""A child process for tests/export/test_search_memory.py: a plain ONNX convolution stack (no TensorFlow) with large
activations, and the peak RSS one step of the int8 search adds on it: `python onnx_memory_probe.py sqnr|calib
IMAGES FOLDER CHUNK|default`."""

import resource
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

def conv_model(path, size=128, width=32, depth=4):
    """NHWC float input, then DEPTH 3x3 Conv+Relu of WIDTH channels at SIZE px: 2 MB per activation per image."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Transpose", ["x"], ["t0"], perm=[0, 3, 1, 2], name="nchw")]
    inits, prev, cin = [], "t0", 3
    for i in range(depth):
        w = numpy_helper.from_array((rng.normal(0, 0.2, (width, cin, 3, 3))).astype(np.float32), f"w{i}")
        b = numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")
        inits += [w, b]
        nodes += [helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], name=f"conv{i}"),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        prev, cin = f"r{i}", width
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["y"], name="gap"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size, size, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)

if __name__ == "__main__":
    from edgeship.export import onnx_convert, quant_diagnosis

    what, n = sys.argv[1], int(sys.argv[2])
    tmp = Path(sys.argv[3])
    tmp.mkdir(exist_ok=True)
    conv_model(tmp / "f.onnx")
    images = np.random.default_rng(1).integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)
    if what == "sqnr":
        onnx_convert.quantize_qdq(tmp / "f.onnx", tmp / "q.onnx", images[:8])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if what == "sqnr":
        chunk = {} if sys.argv[4] == "default" else {"chunk": int(sys.argv[4])}
        quant_diagnosis.onnx_activation_sqnr(tmp / "f.onnx", tmp / "q.onnx", images, tmp, **chunk)
    else:
        if sys.argv[4] != "default":
            onnx_convert.calibration_stride = lambda count, most=16: int(sys.argv[4])
        onnx_convert.quantize_qdq(tmp / "f.onnx", tmp / "q2.onnx", images, "Entropy")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"added_mb={(peak - base) / 1024:.0f}")
