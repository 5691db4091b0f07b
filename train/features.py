"""Backbone features computed once and memory-mapped on disk, so head training never runs the backbone.

A frozen backbone gives the same features for an image every epoch; computing them once turns an epoch
into a few matrix products (the README has the measured speed-up). The `.npy` files are memory-mapped,
so a dataset larger than RAM trains batch by batch from disk. A cache is reused when its key (backbone,
weights, input size, image list) matches, e.g. after an interrupted run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from edgeship.core.pixels import iter_pixel_chunks
from edgeship.core.tfenv import import_keras
from edgeship.runtime.fileio import atomic_write_json
from edgeship.runtime.spec import InputSpec

from .backbones import pooled_output


def cache_key(model_fingerprint: dict, paths: Sequence[Path]) -> str:
    digest = hashlib.sha256(json.dumps(model_fingerprint, sort_keys=True).encode())
    for path in paths:
        digest.update(str(path).encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def feature_model(model):
    """image -> pooled backbone features: the classifier's input up to its `pool` layer (or the backbone's
    output for feature-vector backbones)."""
    _, keras = import_keras()
    return keras.Model(model.inputs, pooled_output(model), name="features")


def cached_features(extractor, paths: Sequence[Path], spec: InputSpec, cache_dir: Path, name: str, key: str,
                    batch_size: int = 32, show_progress: bool = True) -> np.ndarray:
    """(N, D) float32 features of `paths`, memory-mapped from CACHE_DIR/NAME.npy (computed when missing)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_path, meta_path = cache_dir / f"{name}.npy", cache_dir / f"{name}.json"
    if data_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            return np.load(data_path, mmap_mode="r")
    dim = int(extractor.output_shape[-1])
    partial = cache_dir / f".{name}.partial.npy"
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(paths), dim))
    # decoded in parallel threads, a chunk at a time (progress: images/s and the ETA)
    for start, pixels in iter_pixel_chunks(paths, spec, desc=f"cache {name} features", show_progress=show_progress):
        for b in range(0, len(pixels), batch_size):
            batch = pixels[b:b + batch_size].astype(np.float32)
            out[start + b:start + b + len(batch)] = np.asarray(extractor(batch, training=False))
    out.flush()
    del out
    os.replace(partial, data_path)  # complete or absent: an interrupted cache is recomputed
    atomic_write_json(meta_path, {"key": key, "n": len(paths), "dim": dim})
    return np.load(data_path, mmap_mode="r")


def feature_sequence(features: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0):
    """A PyDataset over memory-mapped features: only one batch at a time is read into memory."""
    _, keras = import_keras()

    class FeatureSequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(features))
            self.on_epoch_end()

        def __len__(self):
            return math.ceil(len(features) / batch_size)

        def __getitem__(self, index):
            rows = np.sort(self.order[index * batch_size : (index + 1) * batch_size])  # sorted: sequential reads
            return np.asarray(features[rows], dtype=np.float32), labels[rows]

        def on_epoch_end(self):
            if shuffle:
                self.rng.shuffle(self.order)

    return FeatureSequence()
