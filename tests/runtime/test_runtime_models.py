"""Runtime behaviour on purpose-built models: int8 IO, binary sigmoid, fixed batch, threads, providers."""

import json
import threading

import numpy as np
import pytest
from edgeship.runtime import Classifier, InputSpec, ModelInfo, UsageError
from edgeship.runtime.backends import onnx_providers

SIZE = 16


def _keras_model(outputs: int, activation: str):
    from edgeship.core.tfenv import import_keras

    _, keras = import_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(outputs, activation=activation)(x))


def _pixels(n, seed=0, size=SIZE):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _write(tmp_path, name, data, backend, labels, task="multiclass"):
    from edgeship.export.embed import embed_onnx, embed_tflite

    info = ModelInfo(labels=tuple(labels), input=InputSpec(SIZE, SIZE), task=task)
    path = tmp_path / name
    embed = {"tflite": embed_tflite, "onnxruntime": embed_onnx}[backend]  # a bare file of either runtime
    path.write_bytes(embed(data, {**info.to_dict(), "format": name}))
    return path


def _tflite(model, io_type=None, calibration=None):
    from edgeship.core.tfenv import captured_output, import_keras

    tf, _ = import_keras()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if io_type is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = io_type
    with captured_output():
        return converter.convert()


@pytest.fixture(scope="module")
def multiclass_model():
    return _keras_model(3, "softmax")


def test_int8_io_model_is_quantized_from_its_own_scale_and_zero_point(multiclass_model, tmp_path):
    from edgeship.core.tfenv import import_keras

    tf, _ = import_keras()
    path = _write(tmp_path, "int8io.tflite", _tflite(multiclass_model, tf.int8, _pixels(64, 1)), "tflite", "abc")
    classifier = Classifier.load(path)
    assert classifier.session.input_dtype == np.int8
    assert classifier.session.quantization["input_zero_point"] == -128
    pixels = _pixels(16, 2)
    expected = multiclass_model.predict(pixels.astype(np.float32), verbose=0)
    got = classifier.predict_proba(pixels)
    assert np.abs(got - expected).max() < 0.05
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.9


def test_binary_sigmoid_model_maps_to_two_labels(tmp_path):
    model = _keras_model(1, "sigmoid")
    path = _write(tmp_path, "binary.tflite", _tflite(model), "tflite", ["cat", "dog"], task="binary")
    classifier = Classifier.load(path)
    pixels = _pixels(6, 3)
    positive = model.predict(pixels.astype(np.float32), verbose=0)[:, 0]
    probs = classifier.predict_proba(pixels)
    np.testing.assert_allclose(probs[:, 1], positive, atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    top = classifier.predict(list(pixels))
    assert [t[0].label for t in top] == ["dog" if p >= 0.5 else "cat" for p in positive]


def test_fixed_batch_onnx_falls_back_to_a_loop_with_identical_results(multiclass_model, tmp_path):
    import tf2onnx
    from edgeship.core.tfenv import captured_output, import_keras

    tf, _ = import_keras()
    with captured_output():
        fixed, _ = tf2onnx.convert.from_keras(multiclass_model, opset=17,
                                              input_signature=(tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32),))
    path = _write(tmp_path, "fixed.onnx", fixed.SerializeToString(), "onnxruntime", "abc")
    classifier = Classifier.load(path)
    assert classifier.session.input_shape[0] == 1
    pixels = _pixels(5, 4)
    batched = classifier.predict_proba(pixels)
    looped = np.concatenate([classifier.predict_proba(pixels[i : i + 1]) for i in range(5)])
    np.testing.assert_array_equal(batched, looped)
    np.testing.assert_allclose(batched, multiclass_model.predict(pixels.astype(np.float32), verbose=0), atol=1e-5)


@pytest.mark.parametrize("artifact", ["tflite_int8", "tflite", "onnx"])
def test_one_classifier_from_several_threads_gives_single_thread_results(exported_run, artifact):
    classifier = Classifier.load(exported_run / "bundle", artifact=artifact)
    inputs = list(_pixels(12, 6, size=32))
    expected = classifier.predict_proba(np.stack(inputs))
    results, errors = {}, []

    def worker(offset):
        try:
            for repeat in range(20):
                i = (offset + repeat) % len(inputs)
                results.setdefault(offset, []).append((i, classifier.predict_proba(inputs[i][None])[0]))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for rows in results.values():
        for i, probs in rows:
            np.testing.assert_allclose(probs, expected[i], atol=1e-6)
    assert sum(len(r) for r in results.values()) == 80


def test_unavailable_onnx_provider_is_a_clear_usage_error(exported_run):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here; the not-available path cannot be shown")
    with pytest.raises(UsageError, match="provider 'cuda' is not available here"):
        Classifier.load(exported_run / "bundle" / "model_float32.onnx", provider="cuda")
    assert onnx_providers() == ["CPUExecutionProvider"]
    cpu = Classifier.load(exported_run / "bundle" / "model_float32.onnx", provider="cpu")
    assert "CPUExecutionProvider" in cpu.describe()
    with pytest.raises(UsageError, match="ONNX models only"):
        Classifier.load(exported_run / "bundle" / "model_int8.tflite", provider="cpu")


@pytest.mark.gpu
def test_onnx_on_cuda_matches_cpu(exported_run):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("no CUDA provider in this onnxruntime: GPU not available")
    model = exported_run / "bundle" / "model_float32.onnx"
    gpu, cpu = Classifier.load(model, provider="cuda"), Classifier.load(model, provider="cpu")
    assert "CUDAExecutionProvider" in gpu.describe()
    pixels = _pixels(8, 5, size=32)
    np.testing.assert_allclose(gpu.predict_proba(pixels), cpu.predict_proba(pixels), atol=1e-4)


def test_valid_model_with_missing_or_wrong_metadata_is_a_model_load_error(multiclass_model, tmp_path):
    from edgeship.export.embed import set_tflite_metadata
    from edgeship.runtime import ModelLoadError
    from edgeship.runtime.spec import EMBEDDED_KEY

    def embed_raw(data, metadata):  # bypasses embed_tflite, which refuses invalid metadata itself
        return set_tflite_metadata(data, {EMBEDDED_KEY: json.dumps(metadata).encode()})

    plain = _tflite(multiclass_model)
    cases = {
        "no_metadata.tflite": (plain, "no edgeship metadata embedded"),
        "no_labels.tflite": (embed_raw(plain, {"input": {"height": SIZE, "width": SIZE}}), "malformed edgeship metadata"),
        "one_label.tflite": (embed_raw(plain, {"labels": ["a"], "input": {"height": SIZE, "width": SIZE}}),
                             "at least two labels"),
        "bad_task.tflite": (embed_raw(plain, {"labels": ["a", "b"], "task": "regression",
                                              "input": {"height": SIZE, "width": SIZE}}), "unknown task"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ModelLoadError, match=message):
            Classifier.load(path)
