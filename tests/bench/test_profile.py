"""`bench --profile`: where the time goes, per node and per op type, for TFLite and ONNX."""

from __future__ import annotations

import json

import pytest
from edgeship.bench.matrix import Artifact
from edgeship.bench.profiling import profile_artifact


def _convert(model, folder, name):
    import tensorflow as tf
    import tf2onnx

    tflite = folder / f"{name}.tflite"
    tflite.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    onnx = folder / f"{name}.onnx"
    size = model.input_shape[1]
    tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, size, size, 3), tf.float32, name="x"),),
                               output_path=str(onnx))
    return {"tflite": tflite, "onnx": onnx}


@pytest.fixture(scope="module")
def mobilenet_v2(tmp_path_factory):
    from edgeship.core.tfenv import import_keras

    _, keras = import_keras()
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=0.35, weights=None, classes=10)
    return _convert(model, tmp_path_factory.mktemp("profile"), "mobilenet_v2")


@pytest.fixture(scope="module")
def one_expensive_op(tmp_path_factory):
    """A small network with one convolution 64 times wider than the others."""
    from edgeship.core.tfenv import import_keras

    _, keras = import_keras()
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="cheap")(inputs)
    x = keras.layers.Conv2D(512, 3, padding="same", activation="relu", name="expensive")(x)
    x = keras.layers.Conv2D(8, 1, activation="relu", name="cheap_after")(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return _convert(keras.Model(inputs, outputs), tmp_path_factory.mktemp("expensive"), "expensive")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_a_mobilenet_v2_profile_names_every_node_and_its_op_kinds_add_up(mobilenet_v2, fmt):
    """How close the node times come to the p50 is a speed figure (tests/benchmarks/test_profile_fidelity.py, `make
    bench`): a busy CI machine swings it. Here: every node is there, and the per-op-kind view adds up to them."""
    profile = profile_artifact(Artifact("mobilenet_v2", mobilenet_v2[fmt], fmt, fmt), threads=1, runs=10)
    assert len(profile.nodes) > 50 and profile.p50_ms > 0 and all(n.ms >= 0 for n in profile.nodes)
    assert len({n.name for n in profile.nodes}) == len(profile.nodes)
    kinds = profile.by_op()
    conv = "CONV_2D" if fmt == "tflite" else "Conv"
    assert next(iter(kinds)) == conv  # convolutions are most of MobileNetV2's time (4x the depthwise ones)
    assert sum(kinds.values()) == pytest.approx(profile.total_ms)
    if fmt == "tflite":  # one timed node per op of the FlatBuffer, in its order
        from edgeship.core.tflite_graph import read_graph

        ops = read_graph(mobilenet_v2[fmt].read_bytes())[0]
        assert [n.op for n in profile.nodes] == [op.name for op in ops]


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_one_deliberately_expensive_op_is_on_top(one_expensive_op, fmt):
    profile = profile_artifact(Artifact("expensive", one_expensive_op[fmt], fmt, fmt), threads=1, runs=20)
    top = profile.top(1)[0]
    assert "expensive" in top.name and top.op in ("CONV_2D", "Conv"), profile.top(3)
    assert top.ms > 0.5 * profile.total_ms
    # the nodes `export --max-drop` left in float are summed apart: here, as if the expensive one were
    again = profile_artifact(Artifact("expensive", one_expensive_op[fmt], fmt, fmt), threads=1, runs=20,
                             float_layers=[top.name])
    expensive = next(n for n in again.nodes if n.name == top.name)
    assert again.float_layers == [top.name] and again.float_layers_ms == expensive.ms


def test_bench_profile_writes_records_a_table_and_a_plot(exported_run, tmp_path, cli):
    out = tmp_path / "bench"
    done = cli("bench", exported_run / "bundle", "--backend", "tflite,onnxruntime-cpu", "--runs", "3", "--threads",
               "1", "--profile", "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    bench = json.loads((out / "bench.json").read_text())
    profiled = {r["name"]: r["profile"] for r in bench["rows"] if r.get("profile")}
    assert {"tflite", "tflite_int8", "tflite_fp16", "onnx", "onnx_int8"} <= set(profiled)
    for name, profile in profiled.items():
        assert profile["threads"] == 1 and profile["nodes"] and all(n["ms"] >= 0 for n in profile["nodes"]), name
    assert "DEQUANTIZE" in {n["op"] for n in profiled["tflite_fp16"]["nodes"]}  # float16 weights: 0 ms per image
    markdown = (out / "bench.md").read_text()
    assert "## Where the time goes" in markdown and "| CONV_2D |" in markdown and "| QLinearConv |" in markdown
    assert (out / "bench_profile.png").stat().st_size > 10_000


def test_bench_profile_says_what_the_float_layers_left_by_max_drop_cost(run_copy, cli):
    """The report's --max-drop record names the nodes kept in float; the profile sums their time apart."""
    from edgeship.core.tflite_graph import read_graph

    ops, tensors = read_graph((run_copy / "bundle" / "model_int8.tflite").read_bytes())
    conv = next(tensors[op.outputs[0]].name for op in ops if op.name == "CONV_2D")
    report_path = run_copy / "report.json"
    report = json.loads(report_path.read_text())
    row = next(a for a in report["artifacts"] if a["name"] == "tflite_int8")
    row["quantization"] = {"budget_pp": 0.5, "calibration": "min-max", "float_layers": [conv], "chosen": "1 node(s) float",
                           "trials": [{"label": "1 node(s) float", "val_accuracy": 0.99, "p50_ms": 0.05,
                                       "float_layers": [conv], "meets_budget": True}]}
    report_path.write_text(json.dumps(report))
    done = cli("bench", run_copy, "--backend", "tflite", "--runs", "3", "--threads", "1", "--profile")
    assert done.returncode == 0, done.stdout + done.stderr
    bench = json.loads((run_copy / "bench.json").read_text())
    profile = next(r["profile"] for r in bench["rows"] if r["name"] == "tflite_int8" and r.get("profile"))
    node = next(n for n in profile["nodes"] if n["name"] == conv)
    assert profile["float_layers"] == [conv] and profile["float_layers_ms"] == node["ms"] > 0
    assert "node(s) `--max-drop` left in float take" in (run_copy / "bench.md").read_text()
