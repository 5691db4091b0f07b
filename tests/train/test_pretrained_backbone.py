"""A real ImageNet-pretrained backbone in `make test`, without a download: Google Coral's int8 MobileNetV2
(tests/data/coral, Apache-2.0) dequantized into keras.applications.MobileNetV2 (tests/pretrained.py). Small models
trained from scratch hide what a pretrained one shows (dynamic-range formats that are no faster, or lose accuracy),
so the default export set and the gate are checked on this one too."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ..pretrained import CORAL, MOBILENET_V2_TFLITE, dequantized_mobilenet_v2, save_backbone_weights

pytestmark = pytest.mark.slow


def test_the_dequantized_backbone_classifies_photos_as_the_coral_model_does():
    """The same two photos through the int8 TFLite model and the Keras model with its dequantized weights: the same
    top-1 ImageNet class, and the Keras model sure of it (the weights are real, not random)."""
    from edgeship.runtime.backends import TFLiteSession
    from edgeship.runtime.preprocess import prepare_image
    from edgeship.runtime.spec import InputSpec

    model, kernel, bias = dequantized_mobilenet_v2()
    coral = TFLiteSession(MOBILENET_V2_TFLITE)
    for photo in ("cat.png", "bird.png"):
        pixels = prepare_image(CORAL / photo, InputSpec(224, 224))[None]
        int8_top = coral.run_prepared(pixels)[0].argsort()[::-1]  # its uint8 input is the pixels (scale 1/128, zp 128)
        features = model.predict(pixels.astype(np.float32) / 127.5 - 1.0, verbose=0).mean(axis=(1, 2))
        logits = features @ kernel + bias
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        assert probs[0].argmax() == int8_top[0], photo
        assert set(probs[0].argsort()[::-1][:2]) == set(int8_top[:2]), photo
        assert probs[0].max() > 0.5, photo


def test_a_pretrained_mobilenet_v2_fine_tuned_on_photos_passes_the_default_export_and_gate(tmp_path):
    from ..photos import write_photo_folder

    weights = save_backbone_weights(tmp_path / "mobilenet_v2_1.0_coral.weights.h5")
    photos = write_photo_folder(tmp_path / "photos", classes=6, per_class=(20, 24), long_side=(100, 200))
    run = tmp_path / "run"

    def edgeship(*args):
        return subprocess.run([sys.executable, "-m", "edgeship", *map(str, args)], capture_output=True, text=True,
                              timeout=900)

    trained = edgeship("train", photos, "--out", run, "--backbone", "mobilenet_v2", "--image-size", "96", "--weights",
                       weights, "--epochs", "8", "--fine-tune-epochs", "1", "--fine-tune-layers", "80",
                       "--val-fraction", "0.2", "--test-fraction", "0.2", "--batch-size", "16")  # the int8 guide's flags
    assert trained.returncode == 0, trained.stderr[-2000:]
    record = json.loads((run / "training" / "report.json").read_text())
    assert record["training"]["epochs_per_phase"]["phase2"] == 1 and record["training"]["fine_tuned_layers"] > 0
    counts = record["split_counts"]
    assert counts["val"] == pytest.approx(0.2 * sum(counts.values()), abs=6)  # stratified per class, rounded
    # the int8 guide's damage: channel 0 ×30 on both branches of the first residual Add, the float model unchanged
    outlier = edgeship("outlier", run, "--out", tmp_path / "outlier", "--residual", "--factor", "30")
    assert outlier.returncode == 0 and "scaled ×30" in outlier.stdout, outlier.stderr[-2000:]
    assert "block_2_expand" in outlier.stdout and "float model unchanged" in outlier.stdout
    assert (tmp_path / "outlier" / "bundle" / "model.keras").read_bytes() != (run / "bundle" / "model.keras").read_bytes()
    exported = edgeship("export", run)  # the default set
    assert exported.returncode == 0, exported.stderr[-2000:]
    gate = edgeship("gate", run, "--min-accuracy", "0.9")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    report = json.loads((run / "report.json").read_text())
    rows = {a["name"]: a for a in report["artifacts"]}
    assert set(rows) == {"keras", "tflite", "tflite_fp16", "tflite_int8", "onnx", "onnx_int8"}
    assert report["reference"]["accuracy"] >= 0.9  # pretrained features on real photos
    for name in ("tflite_int8", "onnx_int8"):
        assert abs(rows[name]["accuracy_delta_pp"]) <= 1.0 and rows[name]["agreement"] >= 0.98, rows[name]
