"""How fast can ONNX Runtime's int8 get on this CPU? Every quantization option the issue lists, timed on
MobileNetV2 at 224 px (random weights; latency does not depend on them), batch 1, one thread.

    python -m edgeship.bench.ort_int8_options [--runs 200] [--alpha 1.0] [--size 224]

Prints one table row per option (median of RUNS after 20 warm-up runs) with its ratio over ONNX float32 at
the same graph optimization level, and TFLite float32 / int8 from the same Keras model for comparison.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np


def _median_ms(call, runs: int, warmup: int = 20) -> float:
    from edgeship.runtime.timing import time_calls

    return float(np.median(time_calls(call, warmup, runs)))


def _ort_ms(path: Path, x: np.ndarray, runs: int, level: str = "ORT_ENABLE_ALL") -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return _median_ms(lambda: session.run(None, {name: x}), runs)


def _tflite_ms(data: bytes, x: np.ndarray, runs: int) -> float:
    from edgeship.runtime.backends import TFLiteSession

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "m.tflite")
        path.write_bytes(data)
        session = TFLiteSession(path, threads=1, data=data)
        tensor = session.prepare(x.astype(np.uint8))
        return _median_ms(lambda: session.run_prepared(tensor), runs)


def _model(keras, size: int, alpha: float):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None, include_top=False)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(base(x))))


def _onnx_rows(tf, model, calib: np.ndarray, size: int, runs: int) -> list[tuple]:
    """Every ONNX Runtime static-int8 option on the same model, p50 and speed-up over float32 per graph level."""
    import onnx
    import tf2onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgeship.core.tfenv import captured_output

    sample, tmp = calib[:1], Path(tempfile.mkdtemp(prefix="edgeship-ort-options-"))
    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    with captured_output():
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    onnx.save(proto, str(tmp / "float.onnx"))
    quant_pre_process(str(tmp / "float.onnx"), str(tmp / "prepared.onnx"))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"image": image[None]} for image in calib])

        def get_next(self):
            return next(self.items, None)

    float_ms = {level: _ort_ms(tmp / "float.onnx", sample, runs, level)
                for level in ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC")}
    rows = [("onnx float32", level, ms, 1.0) for level, ms in float_ms.items()]
    grid = itertools.product((QuantFormat.QDQ, QuantFormat.QOperator), ((QuantType.QInt8, "S8S8"), (QuantType.QUInt8, "U8S8")),
                             (True, False), (False, True), (True, False))
    for fmt, (activation, pair), per_channel, reduce_range, prepared in grid:
        out = tmp / "q.onnx"
        quantize_static(str(tmp / ("prepared.onnx" if prepared else "float.onnx")), str(out), Reader(), quant_format=fmt,
                        activation_type=activation, weight_type=QuantType.QInt8, per_channel=per_channel,
                        reduce_range=reduce_range)
        label = (f"{fmt.name} {pair} {'per-channel' if per_channel else 'per-tensor'}"
                 f"{' reduce_range' if reduce_range else ''}{'' if prepared else ' no-preprocess'}")
        for level in (("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED") if fmt == QuantFormat.QDQ else ("ORT_ENABLE_ALL",)):
            ms = _ort_ms(out, sample, runs, level)
            rows.append((label, level, ms, float_ms[level] / ms))
    return rows


def _tflite_rows(tf, model, calib: np.ndarray, runs: int) -> list[tuple]:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    tflite_float = converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in calib)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.uint8
    tflite_int8 = converter.convert()
    tflite_ms, tflite_int8_ms = (_tflite_ms(data, calib[:1], runs) for data in (tflite_float, tflite_int8))
    return [("tflite float32", "XNNPACK", tflite_ms, 1.0), ("tflite int8", "XNNPACK", tflite_int8_ms, tflite_ms / tflite_int8_ms)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)

    from edgeship.core.tfenv import import_keras

    tf, keras = import_keras()
    model = _model(keras, args.size, args.alpha)
    calib = np.random.default_rng(0).integers(0, 256, (16, args.size, args.size, 3)).astype(np.float32)
    rows = _onnx_rows(tf, model, calib, args.size, args.runs) + _tflite_rows(tf, model, calib, args.runs)
    print(f"MobileNetV2 alpha {args.alpha} at {args.size} px, batch 1, 1 thread, median of {args.runs} runs")
    print("| option | graph optimization | p50 ms | speed-up over float32 |")
    print("|---|---|---|---|")
    for label, level, ms, ratio in rows:
        print(f"| {label} | {level} | {ms:.2f} | {ratio:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
