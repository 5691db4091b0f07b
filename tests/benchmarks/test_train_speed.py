"""A frozen-backbone epoch on cached features vs the same epoch through the full backbone (MobileNetV2,
224 px; goal: >= 10x). The cache itself costs one forward pass, reported beside the epochs."""

import time

import numpy as np
from edgeship.core.tfenv import import_keras
from edgeship.runtime.spec import InputSpec
from edgeship.train.backbones import build_classifier, output_units
from edgeship.train.features import cache_key, cached_features, feature_model, feature_sequence
from edgeship.train.loader import make_sequence

from .conftest import report_line

N_IMAGES, CLASSES, BATCH = 256, 10, 32


class EpochTimer:
    def __init__(self, keras):
        self.seconds = []
        parent = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                parent.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                parent.seconds.append(time.perf_counter() - parent.started)

        self.callback = Callback()


def test_cached_feature_epoch_vs_full_backbone_epoch(benchmark, capsys, tmp_path):
    from PIL import Image

    _, keras = import_keras()
    rng = np.random.default_rng(0)
    paths, labels = [], np.arange(N_IMAGES) % CLASSES
    for i in range(N_IMAGES):  # real decode + resize work, like a user's folder
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    spec = InputSpec(224, 224)
    model = build_classifier("mobilenet_v2", CLASSES, 224, None, alpha=1.0)
    model.get_layer("backbone").trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    images = make_sequence(paths, labels, spec, BATCH, shuffle=True, show_progress=False)
    results = {}

    def run():
        full = EpochTimer(keras)  # epoch 1 includes graph tracing: epoch 2 is the steady-state one
        model.fit(images, epochs=2, verbose=0, callbacks=[full.callback])
        started = time.perf_counter()
        features = cached_features(feature_model(model), paths, spec, tmp_path / "cache", "train",
                                   cache_key({"bench": 1}, paths), BATCH, show_progress=False)
        cache_seconds = time.perf_counter() - started
        units, activation = output_units(CLASSES)
        inputs = keras.Input((features.shape[1],))
        head = keras.Model(inputs, keras.layers.Dense(units, activation=activation)(keras.layers.Dropout(0.2)(inputs)))
        head.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        cached = EpochTimer(keras)
        head.fit(feature_sequence(features, labels, BATCH, True), epochs=2, verbose=0, callbacks=[cached.callback])
        results.update(full_epoch=full.seconds[1], cached_epoch=cached.seconds[1], cache_build=cache_seconds)

    benchmark.group = "train"
    benchmark.pedantic(run, rounds=1, iterations=1)
    speedup = results["full_epoch"] / results["cached_epoch"]
    benchmark.extra_info.update(results, speedup=speedup)
    report_line(capsys, f"MobileNetV2 224 px, {N_IMAGES} images, frozen backbone: epoch through the backbone "
                        f"{results['full_epoch']:.2f} s, on cached features {results['cached_epoch'] * 1000:.1f} ms "
                        f"({speedup:.0f}x); building the cache once {results['cache_build']:.2f} s")
    assert speedup >= 10
