"""The phone must see what the gate saw: edgeship resizes photos exactly as MediaPipe's ImageClassifier does.

MediaPipe's CPU preprocessing (ImageToTensorCalculator) warps the whole image onto the tensor with OpenCV's
fixed-point bilinear interpolation and no antialiasing. A "classifier" whose scores are its own input pixels
reads MediaPipe's tensor out exactly; then real classifiers, an edgeship bundle and a model carrying only
standard metadata, must name the same class with the same scores on photos far larger than their input.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

mp = pytest.importorskip("mediapipe")
skimage_data = pytest.importorskip("skimage.data")

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """scikit-image's sample photographs (300 to 1,000 px) as PNG files: lossless, so MediaPipe's decoder and
    PIL's give the same pixels and only the resize can differ."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name in PHOTOS:
        path = folder / f"{name}.png"
        Image.fromarray(getattr(skimage_data, name)()).convert("RGB").save(path)
        paths.append(path)
    return paths


def _classify(model, path, max_results=-1):
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model)),
                                            max_results=max_results)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        return classifier.classify(mp.Image.create_from_file(str(path))).classifications[0].categories


@pytest.fixture(scope="module")
def readout_model(tmp_path_factory):
    """A TFLite model with standard metadata whose 24x32x3 "class scores" are its input pixels / 255."""
    from edgeship.core.tfenv import import_keras
    from edgeship.export.embed import embed_tflite
    from edgeship.runtime.spec import InputSpec, ModelInfo

    tf, keras = import_keras()
    inputs = keras.Input((24, 32, 3))
    model = keras.Model(inputs, keras.layers.Flatten()(keras.layers.Rescaling(1 / 255.0)(inputs)))
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    info = ModelInfo(tuple(f"p{i}" for i in range(24 * 32 * 3)), InputSpec(24, 32))
    path = tmp_path_factory.mktemp("readout") / "readout.tflite"
    path.write_bytes(embed_tflite(data, {**info.to_dict(), "format": "tflite", "precision": "float32"}))
    return path, info


@pytest.mark.slow
def test_the_default_resize_is_mediapipes_pixel_for_pixel(readout_model, photos, tmp_path):
    from edgeship.runtime.preprocess import prepare_image

    model, info = readout_model
    rng = np.random.default_rng(0)
    odd = []  # sizes that exercise rounding: shrinking by non-integer factors, enlarging, tiny
    for i, (h, w) in enumerate([(61, 97), (333, 517), (5, 3), (1000, 30), (24, 32)]):
        odd.append(tmp_path / f"noise{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(odd[-1])
    for path in [*photos, *odd]:
        seen = np.zeros(24 * 32 * 3)
        for category in _classify(model, path):
            seen[category.index] = category.score
        theirs = np.rint(seen * 255).reshape(24, 32, 3)
        ours = prepare_image(path, info.input).astype(float)
        assert np.array_equal(ours, theirs), (path.name, float(np.abs(ours - theirs).max()))


def _top(categories):
    return (categories[0].category_name, categories[0].score) if categories else ("unknown", None)


def _compare_with_mediapipe(model, photos) -> float:
    """Top-1 (or `unknown`) equal on every photo; returns the largest score difference over all classes."""
    from edgeship.runtime import Classifier

    ours = Classifier.load(model)
    worst = 0.0
    for path in photos:
        theirs = {c.category_name: c.score for c in _classify(model, path)}
        mine = ours.predict(path, top_k=len(ours.labels))
        assert mine[0].label == _top(_classify(model, path, 1))[0], path.name
        worst = max(worst, max(abs(p.score - theirs.get(p.label, 0.0)) for p in mine if p.label != "unknown"))
    return worst


@pytest.mark.slow
def test_an_edgeship_bundle_answers_like_mediapipe_on_large_photos(exported_run, photos, tmp_path):
    """The 32 px test model on photos of 300-1,000 px and on its own test digits enlarged to 160 px (5x)."""
    from edgeship.core.splits import SplitManifest
    from edgeship.export.formats import FORMATS

    digits = []
    for row in SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[:16]:
        digits.append(tmp_path / f"{row.label}_{row.path.stem}.png")
        Image.open(row.path).convert("RGB").resize((160, 160), Image.Resampling.BICUBIC).save(digits[-1])
    figures = {}
    for name in ("tflite", "tflite_int8"):
        figures[name] = _compare_with_mediapipe(exported_run / "bundle" / FORMATS[name].filename, [*photos, *digits])
        assert figures[name] <= 0.05, (name, figures[name])
    print(f"\nworst score difference against MediaPipe's ImageClassifier: {json.dumps(figures)}")


@pytest.mark.slow
def test_a_model_with_only_standard_metadata_answers_like_mediapipe(photos):
    """MediaPipe Model Maker's own metadata writer made this file (tests/data): no edgeship metadata at all."""
    from pathlib import Path

    model = Path(__file__).parents[1] / "data" / "mediapipe_digits.tflite"
    worst = _compare_with_mediapipe(model, photos)
    assert worst <= 0.05, worst
    print(f"\nworst score difference against MediaPipe's ImageClassifier: {worst:.2e}")


def test_antialiased_resizing_stays_a_named_choice(tmp_path):
    from edgeship.runtime.preprocess import prepare_image
    from edgeship.runtime.spec import InputSpec

    path = tmp_path / "stripes.png"
    stripes = np.zeros((256, 256, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: an antialiased 8x shrink gives grey, point sampling does not
    Image.fromarray(stripes).save(path)
    smooth = prepare_image(path, InputSpec(32, 32, resize="bilinear-antialias"))
    assert np.array_equal(smooth, np.asarray(Image.fromarray(stripes).resize((32, 32), Image.Resampling.BILINEAR)))
    sharp = prepare_image(path, InputSpec(32, 32))
    assert abs(float(smooth.mean()) - 127.5) < 2 and set(np.unique(sharp)) <= {0, 255}


def test_a_schema_1_bundle_keeps_its_antialiased_resize_and_its_digest():
    """Before schema 2, "bilinear" named PIL's antialiased filter: old bundles keep preprocessing as they were
    trained, and read-then-written they are byte for byte what they were, so their reports still match."""
    from edgeship.runtime.spec import ModelInfo

    old = {"schema_version": 1, "labels": ["a", "b"], "task": "multiclass", "unknown_threshold": None,
           "input": {"height": 8, "width": 8, "channels": 3, "color": "RGB", "value_range": [0.0, 255.0],
                     "resize": "bilinear"}}
    info = ModelInfo.from_dict(old)
    assert info.input.resize == "bilinear-antialias" and info.to_dict() == old
    new = ModelInfo.from_dict({**old, "schema_version": 2})
    assert new.input.resize == "bilinear" and new.digest() != info.digest()


def test_train_records_the_resize_and_refuses_an_unknown_one(small_digits, tmp_path, cli):
    from edgeship.runtime import Bundle
    from edgeship.train import TrainConfig, train

    result = cli("train", small_digits, "--out", tmp_path / "x", "--resize", "sideways")
    assert result.returncode == 2 and "invalid choice: 'sideways'" in result.stderr
    run = tmp_path / "run"
    train(small_digits, run, TrainConfig(backbone="small_cnn", image_size=32, epochs=1, batch_size=16,
                                         resize="bilinear-antialias", unknown_recall=None, show_progress=False))
    spec = Bundle.load(run / "bundle").info.input
    assert spec.resize == "bilinear-antialias"
    assert json.loads((run / "bundle" / "edgeship.json").read_text())["input"]["resize"] == "bilinear-antialias"
