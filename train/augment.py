"""Training-split augmentation (Keras preprocessing layers) and its preview grid.

Augmentation runs in the input pipeline, never inside the model, so exported artifacts contain no random
layers. `--augment` takes `none`, a preset (`standard`, which flips left-right; `standard-no-flip`), or
comma-separated `name[=amount]` items.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from edgeship.core.tfenv import import_keras
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import atomic_write_bytes
from edgeship.runtime.preprocess import prepare_image
from edgeship.runtime.spec import InputSpec


@dataclass(frozen=True)
class AugmentConfig:
    """Amounts as Keras' preprocessing layers take them (fractions of the image size / of a full turn)."""

    flip: bool = False  # horizontal (left-right)
    vertical_flip: bool = False
    rotation: float = 0.0
    zoom: float = 0.0
    translate: float = 0.0
    shear: float = 0.0
    contrast: float = 0.0

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    @classmethod
    def parse(cls, text: str | None) -> "AugmentConfig":
        """'none', 'standard', or e.g. 'flip,rotation=0.1,zoom=0.2' (a bare number-valued name means 0.1)."""
        if not text or text == "none":
            return cls()
        if text in PRESETS:
            return PRESETS[text]
        config, names = cls(), {f.name: f for f in fields(cls)}
        for item in text.split(","):
            name, _, value = item.strip().partition("=")
            name = name.replace("-", "_")
            if name not in names:
                raise UsageError(f"--augment: unknown item {name!r}; use none, {', '.join(PRESETS)} or "
                                 f"{', '.join(names)}")
            if names[name].type in (bool, "bool"):
                config = replace(config, **{name: value.lower() not in ("0", "false", "no")})
                continue
            try:
                amount = float(value) if value else 0.1
            except ValueError as exc:
                raise UsageError(f"--augment: {name}={value!r} is not a number") from exc
            if not 0 <= amount <= 1:
                raise UsageError(f"--augment: {name}={amount} must be between 0 and 1")
            config = replace(config, **{name: amount})
        return config

    def describe(self) -> str:
        parts = [f.name if isinstance(getattr(self, f.name), bool) else f"{f.name}={getattr(self, f.name):g}"
                 for f in fields(self) if getattr(self, f.name)]
        return ",".join(parts) or "none"

    def layers(self, seed: int = 0):
        """A keras.Sequential applying every enabled transform (training=True at call time)."""
        _, keras = import_keras()
        L = keras.layers
        steps = []
        if self.flip or self.vertical_flip:
            mode = "horizontal_and_vertical" if self.flip and self.vertical_flip else (
                "horizontal" if self.flip else "vertical")
            steps.append(L.RandomFlip(mode, seed=seed))
        if self.rotation:
            steps.append(L.RandomRotation(self.rotation, seed=seed + 1))
        if self.zoom:
            steps.append(L.RandomZoom(self.zoom, seed=seed + 2))
        if self.translate:
            steps.append(L.RandomTranslation(self.translate, self.translate, seed=seed + 3))
        if self.shear:
            steps.append(L.RandomShear(x_factor=self.shear, y_factor=self.shear, seed=seed + 4))
        if self.contrast:
            steps.append(L.RandomContrast(self.contrast, value_range=(0, 255), seed=seed + 5))
        return keras.Sequential(steps, name="augment")


STANDARD = AugmentConfig(flip=True, rotation=0.05, zoom=0.1, translate=0.05, contrast=0.1)
# Mirroring changes the class of text, digits, arrows and many product photos: this one never flips.
STANDARD_NO_FLIP = replace(STANDARD, flip=False)
PRESETS = {"standard": STANDARD, "standard-no-flip": STANDARD_NO_FLIP}


class Augmenter:
    """Callable on an NHWC float32 batch in 0-255; returns the augmented batch, clipped to 0-255."""

    def __init__(self, config: AugmentConfig, seed: int = 0):
        self.config = config
        self.model = config.layers(seed) if config.enabled else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.model is None:
            return batch
        out = self.model(batch.astype(np.float32), training=True)
        return np.clip(np.asarray(out), 0.0, 255.0).astype(np.float32)


def preview_augmentation(paths: Sequence[Path], spec: InputSpec, config: AugmentConfig, png_path: str | Path,
                         variants: int = 5, seed: int = 0) -> Path:
    """A grid: one row per image, the original then `variants` augmented copies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    augmenter = Augmenter(config, seed)
    originals = np.stack([prepare_image(p, spec) for p in paths]).astype(np.float32)
    rows = [originals] + [augmenter(originals) for _ in range(variants)]
    fig, axes = plt.subplots(len(paths), variants + 1, figsize=(1.6 * (variants + 1), 1.6 * len(paths)), squeeze=False)
    for r in range(len(paths)):
        for c in range(variants + 1):
            axes[r][c].imshow(rows[c][r].astype(np.uint8))
            axes[r][c].axis("off")
            if r == 0:
                axes[r][c].set_title("original" if c == 0 else f"#{c}", fontsize=8)
    fig.suptitle(f"augmentation: {config.describe()}", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return atomic_write_bytes(png_path, buffer.getvalue())
