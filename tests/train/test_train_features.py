"""train/: every backbone, TF-Hub from a local SavedModel, list-file datasets, augmentation, cached-feature
two-phase training, resume after a kill, reports, the unknown threshold, Grad-CAM and tf.distribute."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from edgeship.core.errors import BackboneError, DatasetError
from edgeship.core.splits import SplitManifest
from edgeship.runtime import Bundle, Classifier
from edgeship.runtime.errors import ImageError, UsageError
from edgeship.train import AugmentConfig, HeadConfig, SplitConfig, TrainConfig, train
from PIL import Image

from ..conftest import REPO

QUICK = dict(image_size=32, batch_size=16, show_progress=False, splits=SplitConfig(seed=0))


def _history(run: Path, name: str = "history.csv") -> list[dict]:
    with open(run / "training" / name, newline="") as handle:
        return list(csv.DictReader(handle))


# --- backbones -------------------------------------------------------------------------------------------

BACKBONE_CASES = [
    ("small_cnn", 32, {}), ("mobilenet_v2", 32, {"alpha": 0.35}), ("mobilenet_v3_small", 32, {"alpha": 0.75}),
    ("mobilenet_v3_large", 32, {"alpha": 0.75}), ("mobilenet_v3_minimalistic", 32, {}), ("efficientnet_b0", 32, {}),
    ("resnet50", 32, {}), ("inception_v3", 75, {}),
]


def test_every_registered_backbone_has_a_test_case():
    from edgeship.train.backbones import BACKBONES

    assert sorted(name for name, _, _ in BACKBONE_CASES) == sorted(BACKBONES)


@pytest.mark.slow
@pytest.mark.parametrize("backbone, size, options", BACKBONE_CASES, ids=[c[0] for c in BACKBONE_CASES])
def test_backbone_builds_and_one_training_step_changes_its_weights(backbone, size, options):
    from edgeship.train.backbones import build_classifier

    model = build_classifier(backbone, 3, image_size=size, weights=None, **options)
    # eager: tracing a graph of ResNet50 or InceptionV3 costs ~30 s, one eager step ~1 s
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
    x = np.random.default_rng(0).integers(0, 256, (4, size, size, 3)).astype(np.float32)
    backbone_layer = model.get_layer("backbone")
    before = [w.copy() for w in backbone_layer.get_weights()]
    model.train_on_batch(x, np.array([0, 1, 2, 0]))
    assert model.output_shape == (None, 3) and len(backbone_layer.output.shape) == 4  # a spatial map for Grad-CAM
    assert any(not np.array_equal(a, b) for a, b in zip(before, backbone_layer.get_weights()))


def test_resnet50_normalization_is_keras_preprocess_input():
    """The frozen 1x1 convolution in front of ResNet50 equals keras' caffe-style preprocess_input."""
    from edgeship.core.tfenv import import_keras
    from edgeship.train.backbones import _caffe

    _, keras = import_keras()
    x = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    ours = np.asarray(_caffe(keras)(x))
    expected = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(ours, expected, atol=1e-3)


def test_input_below_the_backbone_minimum_fails_before_training(small_digits, tmp_path):
    with pytest.raises(BackboneError, match="at least 75 px"):
        train(small_digits, tmp_path / "run", TrainConfig(backbone="inception_v3", **QUICK))


# --- TF-Hub ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hub_savedmodel(tmp_path_factory) -> Path:
    """A feature-vector SavedModel like TF-Hub's (serving_default: [0, 1] RGB -> (N, D)), built here."""
    import tensorflow as tf

    class FeatureVector(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = tf.Variable(tf.random.stateless_normal([3, 3, 3, 16], seed=[1, 2]))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            x = tf.nn.relu(tf.nn.conv2d(images - 0.5, self.kernel, 2, "SAME"))
            x = tf.nn.avg_pool2d(x, 4, 4, "VALID")  # 32 px in: a 4x4 layout survives (digits differ by shape)
            return {"feature_vector": tf.reshape(x, [-1, 4 * 4 * 16])}

    module = FeatureVector()
    path = tmp_path_factory.mktemp("hub") / "feature_vector"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


@pytest.mark.slow
def test_hub_backbone_trains_from_a_local_savedmodel_offline(small_digits, tmp_path, hub_savedmodel, cli):
    from edgeship.export import export_run

    run = tmp_path / "run"
    result = train(small_digits, run, TrainConfig(backbone=f"hub:{hub_savedmodel}", epochs=15, learning_rate=0.01,
                                                  unknown_recall=None, **QUICK))
    bundle = Bundle.load(run / "bundle")
    assert bundle.provenance["training"]["frozen_backbone"] and not bundle.provenance["training"]["keras_safe_mode"]
    assert result.test_accuracy > 0.4  # 4 classes: chance is 0.25
    refused = cli("export", run, "--formats", "tflite")  # the TFSMLayer loads only outside safe mode
    assert refused.returncode == 2 and "TF-Hub bundle" in refused.stderr and "--trust-code" in refused.stderr
    exported = export_run(run, ["keras", "saved_model", "tflite"], show_progress=False, trust_code=True)
    rows = {a["name"]: a for a in exported.parity.to_json()["artifacts"]}
    assert rows["tflite"]["status"] == "ok" and rows["tflite"]["agreement"] > 0.95, rows["tflite"].get("error")
    assert rows["keras"]["agreement"] == 1.0 and rows["saved_model"]["agreement"] > 0.99

    # With the user's word, the TensorFlow predictor loads it everywhere: bench and gate --reference.
    from edgeship.bench.runner import BenchSettings, run_bench

    outcome = run_bench([run], BenchSettings(runs=3, warmup=1, backend="all", show_progress=False, trust_code=True),
                        out_dir=tmp_path / "bench")
    status = {(r["name"], r["backend"], r.get("provider")): r["status"] for r in outcome.result["rows"]}
    assert status[("keras", "keras", None)] == "ok" and status[("saved_model", "tensorflow", None)] == "ok", status
    gate = cli("gate", "--reference", run, "--candidate", run / "bundle" / "model_float32.tflite", "--data",
               small_digits, "--max-drop", "5", "--min-agreement", "0.9", "--trust-code")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "PASS model_float32.tflite" in gate.stdout and "on 160 images" in gate.stdout


def test_hub_url_without_tensorflow_hub_or_network_fails_fast(monkeypatch):
    import importlib.util

    from edgeship.train.hub import resolve_handle

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow_hub" else real(name, *a))
    with pytest.raises(BackboneError, match="needs tensorflow_hub .*or pass a local SavedModel directory"):
        resolve_handle("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5")


# --- datasets: list files, subsets, class weights ----------------------------------------------------------

def _food101(root: Path, digits: Path, names: dict[str, str], test_every: int = 4) -> Path:
    """A Food-101-style tree from digit folders, with class names renamed (spaces, non-ASCII)."""
    (root / "meta").mkdir(parents=True)
    train_lines, test_lines = [], []
    for source, name in names.items():
        images = sorted((digits / source).glob("*.png"))
        (root / "images" / name).mkdir(parents=True)
        for i, image in enumerate(images):
            shutil.copy(image, root / "images" / name / f"{i}.png")
            (test_lines if i % test_every == 0 else train_lines).append(f"{name}/{i}.png")
    (root / "meta" / "classes.txt").write_text("\n".join(names.values()) + "\n", encoding="utf-8")
    (root / "meta" / "train.txt").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    (root / "meta" / "test.txt").write_text("\n".join(test_lines) + "\n", encoding="utf-8")
    return root


@pytest.mark.slow
def test_list_files_with_non_ascii_class_names_end_to_end(small_digits, tmp_path, cli):
    names = {"zero": "crème brûlée", "one": "pão de queijo", "two": "寿司"}
    root = _food101(tmp_path / "food", small_digits, names)
    run = tmp_path / "run"
    train(root, run, TrainConfig(backbone="small_cnn", epochs=4, unknown_recall=None, **QUICK))
    manifest = SplitManifest.read(run / "bundle" / "splits.csv")
    listed_test = {(root / "images" / line).resolve() for line in
                   (root / "meta" / "test.txt").read_text(encoding="utf-8").splitlines()}
    assert {r.path for r in manifest.select("test")} == listed_test  # the official test list is the test split
    assert Bundle.load(run / "bundle").info.labels == tuple(names.values())
    exported = cli("export", run, "--formats", "tflite,onnx")
    assert exported.returncode == 0, exported.stderr
    lone = Classifier.load(run / "bundle" / "model_float32.tflite")
    assert lone.labels == tuple(names.values())
    predicted = cli("predict", run / "bundle" / "model_float32.onnx", root / "images" / "寿司" / "0.png", "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout.splitlines()[0])["predictions"][0]["label"] in names.values()


@pytest.mark.parametrize("line, message", [
    ("zero/../../secret.png", "point outside the dataset root"),
    ("zero/missing.png", "name images missing"),
    ("no-slash-here", "are not 'class/image_id'"),
])
def test_bad_list_file_lines_fail_with_the_first_few_listed(small_digits, tmp_path, line, message):
    from edgeship.train.listfiles import scan_list_dataset

    root = _food101(tmp_path / "food", small_digits, {"zero": "zero", "one": "one"})
    with open(root / "meta" / "train.txt", "a", encoding="utf-8") as handle:
        handle.write(f"{line}\n")
    with pytest.raises(DatasetError, match=f"1 list-file line.* {message}.*train.txt:\\d+ '{line}'"):
        scan_list_dataset(root, show_progress=False)


def test_class_with_no_training_image_fails_before_training(small_digits, tmp_path):
    from edgeship.core.splits import make_splits
    from edgeship.train.listfiles import scan_list_dataset

    root = _food101(tmp_path / "food", small_digits, {"zero": "zero", "one": "one"})
    lines = (root / "meta" / "train.txt").read_text().split()
    (root / "meta" / "train.txt").write_text("\n".join(l for l in lines if not l.startswith("one/")) + "\n")
    dataset, test = scan_list_dataset(root, show_progress=False)
    with pytest.raises(DatasetError, match="class 'one' has .* usable image"):
        make_splits(dataset, SplitConfig(), test)


def test_max_per_class_takes_a_seeded_subset(small_digits):
    from edgeship.core.splits import make_splits
    from edgeship.train import scan_folder

    dataset = scan_folder(small_digits, show_progress=False)
    small = make_splits(dataset, SplitConfig(seed=0, max_per_class=12))
    again = make_splits(dataset, SplitConfig(seed=0, max_per_class=12))
    per_class = {label: sum(r.label == label for r in small.rows) for label in dataset.classes}
    assert set(per_class.values()) == {12}
    assert [r.path for r in small.rows] == [r.path for r in again.rows]


def test_class_weights_balance_the_loss():
    from edgeship.train.fitting import class_weights

    y = np.array([0] * 30 + [1] * 10 + [2] * 20)
    weights = class_weights(y, 3)
    assert weights == pytest.approx({0: 60 / 90, 1: 60 / 30, 2: 60 / 60})
    assert sum(weights[c] * np.sum(y == c) for c in range(3)) == pytest.approx(len(y))  # same total loss weight


# --- augmentation --------------------------------------------------------------------------------------------

def test_augment_parsing_and_errors():
    config = AugmentConfig.parse("flip,rotation=0.2,contrast")
    assert (config.flip, config.rotation, config.contrast, config.zoom) == (True, 0.2, 0.1, 0.0)
    assert AugmentConfig.parse("none").enabled is False and AugmentConfig.parse("standard").enabled
    with pytest.raises(UsageError, match="unknown item 'blur'"):
        AugmentConfig.parse("blur")
    with pytest.raises(UsageError, match="between 0 and 1"):
        AugmentConfig.parse("zoom=3")


def test_augmenter_changes_pixels_within_range_and_flip_mirrors(small_digits, tmp_path):
    from edgeship.runtime.preprocess import prepare_batch
    from edgeship.runtime.spec import InputSpec
    from edgeship.train.augment import Augmenter, preview_augmentation

    paths = sorted((small_digits / "one").glob("*.png"))[:4]
    batch = prepare_batch(paths, InputSpec(32, 32)).astype(np.float32)
    augmented = Augmenter(AugmentConfig.parse("rotation=0.2,zoom=0.2,contrast=0.3"), seed=1)(batch)
    assert augmented.shape == batch.shape and 0 <= augmented.min() and augmented.max() <= 255
    assert np.abs(augmented - batch).mean() > 1.0
    flips = [Augmenter(AugmentConfig(flip=True), seed=s)(batch) for s in range(6)]
    assert all(np.allclose(f[i], batch[i]) or np.allclose(f[i], batch[i][:, ::-1]) for f in flips for i in range(4))
    assert any(np.allclose(f[0], batch[0][:, ::-1]) and not np.allclose(batch[0], batch[0][:, ::-1]) for f in flips)
    png = preview_augmentation(paths, InputSpec(32, 32), AugmentConfig.parse("standard"), tmp_path / "grid.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and Image.open(png).size[0] > 6 * 32


def test_preview_augmentation_cli_trains_nothing(small_digits, tmp_path, cli):
    done = cli("train", small_digits, "--out", tmp_path / "run", "--augment", "standard", "--image-size", "32",
               "--preview-augmentation", tmp_path / "preview.png")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "preview.png").is_file() and not (tmp_path / "run").exists()


# --- two phases on cached features ---------------------------------------------------------------------------

@pytest.mark.slow
def test_two_phase_training_caches_features_and_fine_tunes_only_the_top(small_digits, tmp_path):
    from edgeship.core.pixels import load_pixels
    from edgeship.core.tfenv import import_keras
    from edgeship.train.backbones import build_classifier
    from edgeship.train.features import feature_model

    _, keras = import_keras()
    keras.utils.set_random_seed(0)
    run = tmp_path / "run"
    config = TrainConfig(backbone="mobilenet_v2", alpha=0.35, freeze_backbone=True, epochs=3, fine_tune_epochs=2,
                         fine_tune_layers=6, fine_tune_learning_rate=1e-3, augment=AugmentConfig(flip=True),
                         head=HeadConfig(dropout=0.1, l2=1e-4), unknown_recall=None, **QUICK)
    train(small_digits, run, config)
    bundle = Bundle.load(run / "bundle")
    training = bundle.provenance["training"]
    assert training["cached_features"] and set(training["epochs_per_phase"]) == {"phase1", "phase2"}
    assert len(_history(run)) == training["epochs_per_phase"]["phase1"]
    assert len(_history(run, "history_fine_tune.csv")) == training["epochs_per_phase"]["phase2"]

    # the cache holds exactly what the backbone computes for the training images, in manifest order
    cached = np.load(run / "training" / "cache" / "train.npy")
    paths, _ = SplitManifest.read(run / "bundle" / "splits.csv").paths_and_indices("train", bundle.info.labels)
    keras.utils.set_random_seed(0)
    fresh = build_classifier("mobilenet_v2", 4, 32, None, alpha=0.35)  # same seed: the untrained backbone
    expected = np.asarray(feature_model(fresh)(load_pixels(paths[:8], bundle.info.input, show_progress=False)
                                               .astype(np.float32), training=False))
    np.testing.assert_allclose(cached[:8], expected, rtol=1e-4, atol=1e-5)



def test_a_run_killed_after_fine_tuning_resumes_with_the_fine_tuned_weights(small_digits, tmp_path, monkeypatch):
    """Phase 2 finished, then the run died during evaluation: the rerun must ship the fine-tuned weights and
    count phase 2's epochs (it once reloaded phase 1's weights and dropped phase 2 from the record)."""
    from edgeship.train import trainer
    from edgeship.train.model_setup import weights_sha256

    run, seen = tmp_path / "run", {}
    config = TrainConfig(backbone="small_cnn", freeze_backbone=True, epochs=2, fine_tune_epochs=3,
                         fine_tune_layers=6, fine_tune_learning_rate=1e-2, unknown_recall=None, **QUICK)

    def killed(ctx):
        seen["weights"] = weights_sha256(ctx.built.model)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        train(small_digits, run, config)
    monkeypatch.undo()
    fine_tune_log = _history(run, "history_fine_tune.csv")
    assert len(fine_tune_log) >= 1

    train(small_digits, run, config)
    training = Bundle.load(run / "bundle").provenance["training"]
    assert training["weights_sha256"] == seen["weights"]
    assert training["epochs_per_phase"] == {"phase1": len(_history(run)), "phase2": len(fine_tune_log)}
    assert training["fine_tuned_layers"] > 0


def test_fine_tuning_unfreezes_only_the_top_layers_and_keeps_batchnorm_frozen():
    from edgeship.core.tfenv import import_keras
    from edgeship.train.backbones import build_classifier, leaf_layers
    from edgeship.train.model_setup import unfreeze_top

    _, keras = import_keras()
    model = build_classifier("small_cnn", 3, 32, None)  # random MobileNetV2 gradients are ~1e-10: no visible step
    trainable_weight_layers = unfreeze_top(keras, model, 9)  # relu3 bn3 conv3 pool2 relu2 bn2 conv2 pool1 relu1
    assert trainable_weight_layers == 2
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    leaves = leaf_layers(model.get_layer("backbone"))
    before = [[w.copy() for w in layer.get_weights()] for layer in leaves]
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    model.train_on_batch(x, np.arange(8) % 3)
    changed = [i for i, layer in enumerate(leaves)
               if any(not np.array_equal(a, b) for a, b in zip(before[i], layer.get_weights()))]
    assert [leaves[i].name for i in changed] == ["conv2", "conv3"]
    assert not any(isinstance(leaves[i], keras.layers.BatchNormalization) for i in changed)  # moving stats too


# --- resume after a kill -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_killed_training_resumes_where_it_stopped(small_digits, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "edgeship", "train", str(small_digits), "--out", str(run), "--image-size", "32",
            "--epochs", "30", "--patience", "30", "--batch-size", "8", "--unknown-recall", "0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    history = run / "training" / "history.csv"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if history.is_file() and len(history.read_text().splitlines()) >= 4:  # header + 3 epochs
            break
        time.sleep(0.2)
    assert process.poll() is None, f"training ended before it could be killed: {process.stderr.read().decode()[-500:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    logged_before = len(_history(run))
    assert 3 <= logged_before < 30 and not (run / "bundle" / "model.keras").exists()

    resumed = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming the interrupted run" in resumed.stderr
    epochs = [int(row["epoch"]) for row in _history(run)]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 29  # no epoch run twice, none restarted from 0
    assert len(epochs) >= 29  # at most the epoch in flight at the kill is missing from the log
    bundle = Bundle.load(run / "bundle")
    assert bundle.provenance["training"]["epochs_run"] == len(epochs)
    again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "already holds a trained model" in again.stderr  # finished work is kept


# --- reports and the unknown threshold ---------------------------------------------------------------------

@pytest.mark.slow
def test_training_report_threshold_and_ood_rejection(small_digits, tmp_path):
    ood = tmp_path / "ood"
    ood.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(ood / f"noise{i}.png")
    run = tmp_path / "run"
    train(small_digits, run, TrainConfig(backbone="small_cnn", epochs=6, unknown_recall=0.9, ood_dir=str(ood),
                                         **QUICK))
    bundle = Bundle.load(run / "bundle")
    report = json.loads((run / "training" / "report.json").read_text())["test"]
    from edgeship.core.pixels import load_pixels
    from edgeship.core.tensorflow import load_keras_model

    model = load_keras_model(run / "bundle" / "model.keras")
    manifest = SplitManifest.read(run / "bundle" / "splits.csv")
    val_paths, _ = manifest.paths_and_indices("val", bundle.info.labels)
    val_conf = model.predict(load_pixels(val_paths, bundle.info.input, show_progress=False).astype(np.float32),
                             verbose=0).max(axis=1)
    threshold = bundle.info.unknown_threshold
    assert np.mean(val_conf >= threshold) >= 0.9 and threshold == pytest.approx(np.quantile(val_conf, 0.1, method="lower"))
    ood_conf = model.predict(load_pixels(sorted(ood.glob("*.png")), bundle.info.input, show_progress=False)
                             .astype(np.float32), verbose=0).max(axis=1)
    assert report["unknown"]["ood_rejection_rate"] == pytest.approx(np.mean(ood_conf < threshold))

    test_paths, test_y = manifest.paths_and_indices("test", bundle.info.labels)
    predicted = model.predict(load_pixels(test_paths, bundle.info.input, show_progress=False).astype(np.float32),
                              verbose=0).argmax(axis=1)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.sum() == len(test_y) and np.trace(matrix) == np.sum(predicted == test_y)
    recall = {r["label"]: r["recall"] for r in report["per_class"]}
    for index, label in enumerate(bundle.info.labels):
        assert recall[label] == pytest.approx(np.mean(predicted[test_y == index] == index))
    markdown = (run / "training" / "report.md").read_text()
    assert "confusion.png" in markdown and "out-of-distribution" in markdown
    assert (run / "training" / "confusion.png").read_bytes()[:4] == b"\x89PNG"

    from edgeship.export import export_run

    export_run(run, ["tflite"], show_progress=False)
    device = Classifier.load(run / "bundle" / "model_float32.tflite")  # the threshold travels inside the file
    assert device.info.unknown_threshold == pytest.approx(threshold)
    images = sorted(ood.glob("*.png")) + test_paths[:20]
    top = [device.predict(p)[0] for p in images]
    probs = device.predict_proba(device.prepare(images)).max(axis=1)
    assert [t.label == "unknown" for t in top] == list(probs < threshold)
    assert any(t.label == "unknown" for t in top)


def test_finished_run_is_kept_unless_overwrite(trained_run, small_digits):
    with pytest.raises(UsageError, match="already holds"):
        train(small_digits, trained_run, TrainConfig(backbone="small_cnn", epochs=1, **QUICK))


def test_oversized_image_is_refused_from_its_header(tmp_path, monkeypatch):
    from edgeship.runtime import preprocess

    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match=r"big.png: 40x30 is 1,200 pixels, over the 1,000 limit"):
        preprocess.load_image(tmp_path / "big.png")


# --- Grad-CAM ------------------------------------------------------------------------------------------------

SHAPES = {
    "square": lambda patch: patch.__setitem__((slice(None), slice(None)), 255),
    "ring": lambda patch: [patch.__setitem__(edge, 255) for edge in
                           ((slice(0, 2), slice(None)), (slice(-2, None), slice(None)),
                            (slice(None), slice(0, 2)), (slice(None), slice(-2, None)))],
    "bar": lambda patch: patch.__setitem__((slice(3, 5), slice(None)), 255),
}


def _draw(image: np.ndarray, shape: str, top: int, left: int) -> None:
    SHAPES[shape](image[top:top + 8, left:left + 8])


def _shape_dataset(root: Path, per_class: int = 40, size: int = 32) -> Path:
    """One bright shape (its kind is the class) at a random place on a noisy background."""
    rng = np.random.default_rng(0)
    for label in SHAPES:
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 90, (size, size, 3)).astype(np.uint8)
            _draw(image, label, int(rng.integers(0, size - 8)), int(rng.integers(0, size - 8)))
            Image.fromarray(image).save(root / label / f"{i}.png")
    return root


@pytest.mark.slow
def test_gradcam_peaks_on_the_patch_that_decides_the_class(tmp_path, cli):
    data = _shape_dataset(tmp_path / "shapes")
    run = tmp_path / "run"
    result = train(data, run, TrainConfig(backbone="small_cnn", epochs=15, patience=15, unknown_recall=None, **QUICK))
    assert result.test_accuracy >= 0.9
    probe = np.random.default_rng(5).integers(0, 90, (32, 32, 3)).astype(np.uint8)
    _draw(probe, "square", 12, 23)  # the decisive square sits in the right third
    Image.fromarray(probe).save(tmp_path / "probe.png")
    from edgeship.core.tensorflow import load_keras_model
    from edgeship.train.gradcam import explain

    bundle = Bundle.load(run / "bundle")
    (explanation, png), = explain(load_keras_model(run / "bundle" / "model.keras"), bundle.info,
                                  [tmp_path / "probe.png"], tmp_path / "explain")
    assert explanation.class_name == "square"
    heat = explanation.heatmap
    assert heat[10:22, 21:32].mean() > 2 * heat[:, :16].mean()  # the square's side is where the evidence is
    row, column = explanation.peak()
    assert 8 <= row <= 23 and column >= 19
    assert png.read_bytes()[:4] == b"\x89PNG"
    done = cli("explain", run, tmp_path / "probe.png", "--class", "ring", "--out", tmp_path / "cli")
    assert done.returncode == 0 and "ring" in done.stdout and list((tmp_path / "cli").glob("probe_gradcam_ring.png"))
    wrong = cli("explain", run, tmp_path / "probe.png", "--class", "middle")
    assert wrong.returncode == 2 and "is not a label" in wrong.stderr


# --- tf.distribute -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_mirrored_strategy_trains_on_cpu(small_digits, tmp_path):
    run = tmp_path / "run"
    result = train(small_digits, run, TrainConfig(backbone="small_cnn", epochs=2, strategy="mirrored",
                                                  unknown_recall=None, **QUICK))
    assert Bundle.load(run / "bundle").provenance["training"]["strategy"] == "mirrored"
    assert len(_history(run)) == result.epochs_run == 2


def test_unknown_strategy_is_a_usage_error():
    from edgeship.train.strategy import make_strategy

    with pytest.raises(UsageError, match="choose from default, mirrored, multi-worker"):
        make_strategy("horovod")


# --- binary tasks and --init ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_classes_train_one_sigmoid_output_that_exports_and_runs(small_digits, tmp_path):
    from edgeship.core.tensorflow import load_keras_model
    from edgeship.export import export_run

    run = tmp_path / "run"
    train(small_digits, run, TrainConfig(backbone="small_cnn", epochs=5, classes=["zero", "one"], unknown_recall=None,
                                         **QUICK))
    bundle = Bundle.load(run / "bundle")
    assert bundle.info.task == "binary" and load_keras_model(run / "bundle" / "model.keras").output_shape == (None, 1)
    report = export_run(run, ["tflite", "onnx"], show_progress=False).parity.to_json()
    for row in report["artifacts"]:
        assert row["status"] == "ok" and row["agreement"] == 1.0, row
    classifier = Classifier.load(run / "bundle" / "model_float32.tflite")
    probs = classifier.predict_proba(classifier.prepare(sorted((small_digits / "one").glob("*.png"))[:5]))
    assert probs.shape == (5, 2) and np.allclose(probs.sum(axis=1), 1.0) and probs[:, 1].mean() > 0.5


def test_init_continues_from_a_model_and_checks_its_shape(trained_run, small_digits, tmp_path):
    from edgeship.core.tensorflow import load_keras_model
    from edgeship.core.tfenv import import_keras
    from edgeship.runtime.spec import InputSpec, ModelInfo
    from edgeship.train.model_setup import build_model

    _, keras = import_keras()
    source = trained_run / "bundle" / "model.keras"
    info = Bundle.load(trained_run / "bundle").info
    model = build_model(keras, TrainConfig(init=str(source)), info, 32)
    for a, b in zip(model.get_weights(), load_keras_model(source).get_weights()):
        np.testing.assert_array_equal(a, b)
    three = ModelInfo(("a", "b", "c"), InputSpec(32, 32))
    with pytest.raises(BackboneError, match="--init model has input .* and 4 outputs; this run needs .* and 3"):
        build_model(keras, TrainConfig(init=str(source)), three, 32)


def test_long_work_reports_images_per_second_and_eta(small_digits, tmp_path, monkeypatch, capsys):
    """The feature-cache build (and, through the same iterator, parity and evaluation) shows a rate and an ETA."""
    import keras
    from edgeship.core.dataset import scan_folder
    from edgeship.runtime.spec import InputSpec
    from edgeship.train.features import cached_features

    monkeypatch.setenv("EDGESHIP_PROGRESS", "1")
    monkeypatch.setenv("TQDM_MININTERVAL", "0")  # draw every update, not at most 10 per second
    paths = [s.path for s in scan_folder(small_digits, show_progress=False).samples][:100]
    extractor = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    features = cached_features(extractor, paths, InputSpec(32, 32), tmp_path, "train", "key", 16, show_progress=True)
    bar = capsys.readouterr().err
    assert features.shape == (100, 3)
    assert re.search(r"cache train features: 100%.*100/100 \[\d\d:\d\d<00:00, +[\d.]+img/s\]", bar), bar
