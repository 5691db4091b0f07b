"""Training: bundle contents, preprocessing parity with the runtime, backbones, offline weights."""

import csv
import json

import numpy as np
import pytest
from edgeship.core.errors import BackboneError
from edgeship.core.splits import SplitManifest
from edgeship.runtime.preprocess import prepare_image
from edgeship.runtime.spec import Bundle
from edgeship.train.loader import make_sequence


def test_train_writes_bundle_log_curves_and_manifest(trained_run, small_digits):
    bundle = Bundle.load(trained_run / "bundle")
    assert bundle.info.labels == ("zero", "one", "two", "three")
    assert (trained_run / "bundle" / "model.keras").is_file()
    assert (trained_run / "bundle" / "labels.txt").read_text().split() == list(bundle.info.labels)
    with open(trained_run / "training" / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    assert len(history) == bundle.provenance["training"]["epochs_run"] and "val_accuracy" in history[0]
    assert (trained_run / "training" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    split = bundle.provenance["split"]
    manifest = SplitManifest.read(trained_run / "bundle" / bundle.split_manifest)
    assert manifest.counts() == split["counts"] and sum(split["counts"].values()) == 4 * 40
    assert bundle.provenance["dataset"]["n_images"] == 160
    assert json.loads((trained_run / "bundle" / "edgeship.json").read_text())["schema_version"] == 2


def test_best_checkpoint_is_what_the_bundle_holds(trained_run):
    """The bundle's model scores the best validation accuracy seen in the log, not the last epoch's."""
    from edgeship.core.pixels import load_pixels
    from edgeship.core.tensorflow import load_keras_model

    bundle = Bundle.load(trained_run / "bundle")
    with open(trained_run / "training" / "history.csv") as handle:
        best = max(float(row["val_accuracy"]) for row in csv.DictReader(handle))
    paths, labels = SplitManifest.read(trained_run / "bundle" / "splits.csv").paths_and_indices("val", bundle.info.labels)
    model = load_keras_model(trained_run / "bundle" / "model.keras")
    probs = model.predict(load_pixels(paths, bundle.info.input, show_progress=False).astype(np.float32), verbose=0)
    assert np.mean(probs.argmax(1) == labels) == pytest.approx(best, abs=1e-6)


def test_training_tensors_equal_runtime_tensors(trained_run):
    """Preprocessing parity: the loader feeding Keras and the device runtime make identical tensors."""
    bundle = Bundle.load(trained_run / "bundle")
    paths, labels = SplitManifest.read(trained_run / "bundle" / "splits.csv").paths_and_indices("train", bundle.info.labels)
    sequence = make_sequence(paths[:8], labels[:8], bundle.info.input, batch_size=8, shuffle=False, show_progress=False)
    x, y = sequence[0]
    runtime = np.stack([prepare_image(p, bundle.info.input) for p in paths[:8]]).astype(np.float32)
    np.testing.assert_array_equal(x, runtime)
    np.testing.assert_array_equal(y, labels[:8])


def test_imagenet_weights_offline_fail_fast_with_a_clear_message():
    from edgeship.train.backbones import build_classifier

    try:
        build_classifier("mobilenet_v2", 3, image_size=96, weights="imagenet", alpha=0.35)
    except BackboneError as exc:
        assert "cannot download ImageNet weights" in str(exc) and "--weights none" in str(exc)
    else:
        pytest.skip("ImageNet weights were available (network or cache): nothing to check offline")


def test_unknown_backbone_and_missing_weights_file():
    from edgeship.train.backbones import build_classifier

    with pytest.raises(BackboneError, match="choose from efficientnet_b0, .*small_cnn or hub:HANDLE_OR_DIR"):
        build_classifier("vgg99", 3)
    with pytest.raises(BackboneError, match="weights file not found"):
        build_classifier("mobilenet_v2", 3, image_size=32, weights="/nope/weights.h5", alpha=0.35)


def test_train_config_groups_like_model_maker_and_flat_keywords_land_in_them():
    from edgeship.train import DataOptions, HParams, ModelOptions, SplitConfig, TrainConfig

    grouped = TrainConfig(model=ModelOptions("mobilenet_v2", alpha=0.35), hparams=HParams(epochs=3, batch_size=8),
                          data=DataOptions(splits=SplitConfig(seed=7), unknown_recall=None))
    flat = TrainConfig(backbone="mobilenet_v2", alpha=0.35, epochs=3, batch_size=8, splits=SplitConfig(seed=7),
                       unknown_recall=None)
    assert (grouped.model, grouped.hparams, grouped.data) == (flat.model, flat.hparams, flat.data)
    assert flat.hparams.epochs == 3 and flat.seed == 7 and flat.resume_key() == grouped.resume_key()
    with pytest.raises(AttributeError, match="is a value"):
        flat.epochs = 5  # configs are values: a new one is made, not this one changed
    assert flat.hparams.epochs == 3 and "epochs" not in vars(flat)
    with pytest.raises(TypeError, match="unknown option 'epoch'"):
        TrainConfig(epoch=3)
