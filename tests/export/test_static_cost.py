"""Static cost read from the graph: against the published MobileNetV2 figures, by hand on a tiny model, and in
the report and bench.md beside latency."""

from __future__ import annotations

import json

import pytest

# Sandler et al. 2018, table 6/appendix: MobileNetV2 at 224 px with the 1000-class head
PUBLISHED = {1.0: (300e6, 3.4e6), 0.35: (59e6, 1.7e6)}


@pytest.fixture(scope="module")
def mobilenet_v2_files(tmp_path_factory):
    import tensorflow as tf
    import tf2onnx
    from edgeship.core.tfenv import import_keras

    _, keras = import_keras()
    folder, files = tmp_path_factory.mktemp("mnv2"), {}
    for alpha in PUBLISHED:
        model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=alpha, weights=None, include_top=True)
        tflite = folder / f"mnv2_{alpha}.tflite"
        tflite.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        onnx = folder / f"mnv2_{alpha}.onnx"
        tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, 224, 224, 3), tf.float32, name="x"),),
                                   output_path=str(onnx))
        files[alpha] = (model.count_params(), tflite, onnx)
    return files


@pytest.mark.slow
@pytest.mark.parametrize("alpha", sorted(PUBLISHED))
def test_mobilenet_v2_matches_the_published_multiply_adds_and_parameters(mobilenet_v2_files, alpha):
    from edgeship.core.static_cost import static_cost

    keras_params, tflite, onnx = mobilenet_v2_files[alpha]
    macs, params = PUBLISHED[alpha]
    ours = static_cost(tflite)
    assert ours.error is None and ours.macs == pytest.approx(macs, rel=0.02), ours
    assert ours.params == pytest.approx(params, rel=0.05), ours
    # BatchNorm folds into the convolutions: fewer parameters than Keras counts (3,538,984 at alpha 1.0)
    assert ours.params < keras_params and (alpha != 1.0 or keras_params == 3_538_984)
    assert ours.weight_bytes == pytest.approx(4 * ours.params, rel=0.01)  # float32, nothing else stored
    other = static_cost(onnx)  # onnx-tool on the same network converted by tf2onnx
    assert other.error is None and other.macs == pytest.approx(ours.macs, rel=0.01), other
    assert other.params == pytest.approx(ours.params, rel=0.01), other
    # the largest activations: the 112x112 maps of the first block (32 and 16 channels, scaled by alpha, plus
    # the expansion), float32; both readers must find at least the largest single map
    largest = 112 * 112 * 96 * (alpha if alpha > 0.35 else 1) * 4
    assert ours.peak_activation_bytes >= 112 * 112 * 16 * 4 and ours.peak_activation_bytes <= 4 * largest


def test_peak_activation_memory_by_hand(tmp_path):
    """input 8x8x3 -> conv 4 (8x8x4) -> flatten (256) -> dense 2 -> softmax: the peak is the conv output and its
    flattened copy alive together (1,024 + 1,024 bytes), above the input and the conv output (768 + 1,024)."""
    import tensorflow as tf
    from edgeship.core.static_cost import tflite_cost
    from edgeship.core.tfenv import import_keras

    _, keras = import_keras()
    inputs = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", bias_initializer="ones")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, activation="softmax", bias_initializer="ones")(x)  # a zero bias is dropped
    model = keras.Model(inputs, outputs)
    cost = tflite_cost(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    assert cost.macs == 8 * 8 * 4 * 3 * 3 * 3 + 256 * 2
    assert cost.params == (3 * 3 * 3 * 4 + 4) + (256 * 2 + 2)
    assert cost.peak_activation_bytes == 2 * 8 * 8 * 4 * 4


def test_report_and_bench_show_static_cost_beside_latency(exported_run, tmp_path, cli):
    from edgeship.core.static_cost import static_cost

    report = json.loads((exported_run / "report.json").read_text())
    rows = {a["name"]: a for a in report["artifacts"]}
    for name in ("tflite", "tflite_int8", "onnx", "onnx_int8"):
        cost = rows[name]["static_cost"]
        assert cost["macs"] == static_cost(exported_run / rows[name]["path"]).macs > 0, name
    assert rows["tflite"]["static_cost"]["macs"] == rows["tflite_int8"]["static_cost"]["macs"]  # same network
    assert rows["tflite_int8"]["static_cost"]["weight_bytes"] < rows["tflite"]["static_cost"]["weight_bytes"] / 3
    assert "static_cost" not in rows["keras"]
    assert "## Static cost" in (exported_run / "report.md").read_text()
    out = tmp_path / "bench"
    done = cli("bench", exported_run / "bundle", "--backend", "tflite", "--runs", "3", "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    bench = json.loads((out / "bench.json").read_text())
    assert all(r["static_cost"]["macs"] == rows["tflite"]["static_cost"]["macs"] for r in bench["rows"]
               if r["status"] == "ok" and r["name"] in ("tflite", "tflite_int8"))
    assert "multiply-adds" in (out / "bench.md").read_text()


def test_a_graph_the_reader_cannot_take_is_a_reason_not_a_failed_export(tmp_path):
    from edgeship.core.static_cost import static_cost

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    cost = static_cost(broken)
    assert cost.macs is None and cost.error and cost.file_bytes == 14
    assert static_cost(tmp_path / "model.keras") is None  # no graph we read: not a figure
