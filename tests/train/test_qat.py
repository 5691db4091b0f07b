"""Quantization-aware training's building blocks (#32, first part): a trained model rewritten with BatchNorm folded
and fake quantization on every tensor the int8 graph keeps; the TFLite converter writes a full-integer file from
those learned ranges (no re-calibration), which answers as the fake-quantized Keras model does; fine-tuning keeps
the best validation epoch; the model saves and loads in Keras' safe mode."""

from __future__ import annotations

import numpy as np
import pytest


def _split(run, name):
    from edgeship.core.pixels import load_split
    from edgeship.core.splits import SplitManifest
    from edgeship.runtime.spec import Bundle

    info = Bundle.load(run / "bundle").info
    return load_split(SplitManifest.read(run / "bundle" / "splits.csv"), info.labels, info.input, name)


@pytest.fixture(scope="module")
def qat(trained_run):
    from edgeship.core.tfenv import import_keras
    from edgeship.core.qat import calibrate, quantize_model

    _, keras = import_keras()
    model = keras.saving.load_model(trained_run / "bundle" / "model.keras")
    quantized = quantize_model(model)
    calibrate(quantized, [_split(trained_run, "calib")[0]])
    return model, quantized


def test_batchnorm_folds_and_every_kept_tensor_gets_a_range(qat, trained_run):
    from edgeship.core.qat import fake_quant_layers

    model, quantized = qat
    kinds = {type(layer).__name__ for layer in quantized.layers}
    assert "BatchNormalization" not in kinds and "FoldedConv" in kinds
    ranges = {q.name: (float(q.low), float(q.high)) for q in fake_quant_layers(quantized)}
    assert ranges["fq_input"] == (0.0, 255.0) and ranges["fq_normalize"] == pytest.approx((0.0, 1.0))
    assert all(low <= 0 < high for low, high in ranges.values())  # seeded from the calibration images
    test = _split(trained_run, "test")[0]
    float_probs, fake_probs = model.predict(test, verbose=0), quantized.predict(test, verbose=0)
    assert np.mean(float_probs.argmax(1) == fake_probs.argmax(1)) >= 0.97  # folding kept the function


def test_the_int8_file_uses_the_learned_ranges_and_answers_as_the_fake_quantized_model(qat, trained_run, tmp_path):
    from edgeship.runtime.tflite_session import TFLiteSession, _tflite_interpreter
    from edgeship.core.qat import fake_quant_layers
    from edgeship.export.tflite_convert import from_fake_quantized

    _, quantized = qat
    quantized.export(str(tmp_path / "qat_saved_model"), format="tf_saved_model", verbose=False)
    data = from_fake_quantized(str(tmp_path / "qat_saved_model"))
    interpreter = _tflite_interpreter()[0](model_content=data)
    tensors = interpreter.get_tensor_details()
    assert {t["dtype"].__name__ for t in tensors} <= {"int8", "uint8", "int32"}  # full integer
    scales = [t["quantization"][0] for t in tensors if t["quantization"][0]]
    for q in fake_quant_layers(quantized):  # each learned range is a tensor's scale: nothing re-calibrated it
        assert any(abs(s - (float(q.high) - float(q.low)) / 255) <= 1e-6 * max(s, 1e-9) + 1e-9 for s in scales), q.name
    test = _split(trained_run, "test")[0]
    ours = TFLiteSession(tmp_path / "qat.tflite", data=data).run(test)
    fake = quantized.predict(test, verbose=0)
    assert np.mean(ours.argmax(1) == fake.argmax(1)) >= 0.97 and np.abs(ours - fake).max() <= 4 / 256


def test_fine_tuning_keeps_the_best_validation_epoch_and_the_model_loads_safely(qat, trained_run, tmp_path):
    from edgeship.core.tfenv import import_keras
    from edgeship.core.qat import LEARNING_RATE, fine_tune

    _, keras = import_keras()
    _, quantized = qat
    train, val = _split(trained_run, "train"), _split(trained_run, "val")
    scores = fine_tune(quantized, train, val, epochs=2, batch_size=16)
    assert len(scores) == 3
    optimizer = quantized.optimizer  # the rate fell from LEARNING_RATE to zero over the two epochs' steps
    assert int(optimizer.iterations) == 2 * -(-len(train[1]) // 16)
    assert float(optimizer.learning_rate) < 1e-3 * LEARNING_RATE
    schedule = optimizer.get_config()["learning_rate"]["config"]
    assert schedule["initial_learning_rate"] == pytest.approx(LEARNING_RATE) and schedule["alpha"] == 0
    assert np.mean(quantized.predict(val[0], verbose=0).argmax(1) == val[1]) == max(scores)
    quantized.save(tmp_path / "qat.keras")
    loaded = keras.saving.load_model(tmp_path / "qat.keras")  # safe mode: registered layers, no code from the file
    assert np.allclose(loaded.predict(val[0][:8], verbose=0), quantized.predict(val[0][:8], verbose=0), atol=1e-6)


def test_mobile_blocks_become_full_int8_and_reload_safely(tmp_path):
    """What MobileNetV2/V3 and EfficientNet are made of: a Rescaling with an offset, depthwise convolutions with
    BatchNorm and ReLU6, a residual Add, hard-sigmoid written as Keras ops (`relu6(x + 3) * (1 / 6)`, which Keras
    marks sparse), squeeze-excite with swish and sigmoid inside the convolutions. Every tensor gets a range, the
    converter leaves nothing in float, and the saved model reloads in safe mode (its strides read back as lists)."""
    from edgeship.core.qat import calibrate, fake_quant_layers, quantize_model
    from edgeship.core.tfenv import import_keras
    from edgeship.export.tflite_convert import from_fake_quantized
    from edgeship.runtime.tflite_session import _tflite_interpreter

    _, keras = import_keras()
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = layers.ReLU(6.0)(layers.BatchNormalization()(y))
    y = layers.BatchNormalization()(layers.Conv2D(8, 1, use_bias=False)(y))
    x = layers.Add()([x, y])
    gate = layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard sigmoid
    x = layers.Multiply()([x, gate])
    se = layers.GlobalAveragePooling2D(keepdims=True)(x)
    se = layers.Conv2D(4, 1, activation="swish")(se)
    se = layers.Conv2D(8, 1, activation="sigmoid")(se)
    x = layers.Multiply()([x, se])
    outputs = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).uniform(0, 255, (16, 16, 16, 3)).astype(np.float32)
    quantized = quantize_model(model)
    calibrate(quantized, [images])
    assert len(fake_quant_layers(quantized)) >= 12
    quantized.save(tmp_path / "qat.keras")
    reloaded = keras.saving.load_model(tmp_path / "qat.keras")
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), quantized.predict(images, verbose=0), atol=1e-6)
    reloaded.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    interpreter = _tflite_interpreter()[0](model_content=from_fake_quantized(str(tmp_path / "saved")))
    kinds = {t["dtype"].__name__ for t in interpreter.get_tensor_details()}
    assert kinds <= {"int8", "uint8", "int32"}, kinds  # no float tensor: every op runs in int8
