"""Feed Keras with images prepared by the runtime's own preprocessing function (parity by construction)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from edgeship.core.pixels import load_pixels  # noqa: F401 - re-exported for train's callers
from edgeship.core.tfenv import import_keras
from edgeship.runtime.preprocess import prepare_image
from edgeship.runtime.spec import InputSpec

IN_MEMORY_LIMIT_BYTES = 2 << 30


def make_sequence(paths: Sequence[Path], labels: np.ndarray, spec: InputSpec, batch_size: int,
                  shuffle: bool, seed: int = 0, desc: str = "load images", show_progress: bool = True,
                  augment=None):
    """A keras PyDataset; small sets are decoded once into memory, large ones are read per batch.
    `augment` (an augment.Augmenter) transforms each batch: pass it for the training split only."""
    _, keras = import_keras()

    class ImageSequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.paths = list(paths)
            self.labels = np.asarray(labels)
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(self.paths))
            fits = len(self.paths) * spec.height * spec.width * 3 <= IN_MEMORY_LIMIT_BYTES
            self.pixels = load_pixels(self.paths, spec, desc, show_progress) if fits else None
            self.on_epoch_end()

        def __len__(self):
            return math.ceil(len(self.paths) / batch_size)

        def __getitem__(self, index):
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            if self.pixels is not None:
                x = self.pixels[rows]
            else:
                x = np.stack([prepare_image(self.paths[i], spec) for i in rows])
            x = x.astype(np.float32)
            return (augment(x) if augment is not None else x), self.labels[rows]

        def on_epoch_end(self):
            if shuffle:
                self.rng.shuffle(self.order)

        def plain_batches(self, limit: int):
            """Up to LIMIT batches without augmentation (what inference will see), mixed the way training batches
            are: the files are sorted by class, and a batch of one class would give BatchNorm that class's
            variance instead of the whole set's. The same seeded order every time."""
            order = np.random.default_rng(seed).permutation(len(self.paths))[:limit * batch_size]
            for start in range(0, len(order), batch_size):
                rows = np.sort(order[start:start + batch_size])
                x = self.pixels[rows] if self.pixels is not None else np.stack(
                    [prepare_image(self.paths[i], spec) for i in rows])
                yield x.astype(np.float32)

    return ImageSequence()
