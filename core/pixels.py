"""Decode images into model-ready pixels with the runtime's own preprocessing (parity by construction)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from edgeship.runtime.preprocess import prepare_image
from edgeship.runtime.progress import progress
from edgeship.runtime.spec import InputSpec


def load_pixels(paths: Sequence[Path], spec: InputSpec, desc: str = "load images",
                show_progress: bool = True) -> np.ndarray:
    """NHWC uint8 batch of every path, via runtime.prepare_image."""
    batch = np.empty((len(paths), spec.height, spec.width, 3), dtype=np.uint8)
    for i, path in enumerate(progress(paths, total=len(paths), desc=desc, enabled=show_progress)):
        batch[i] = prepare_image(path, spec)
    return batch
