"""Folders of real photographs for tests: crops of scikit-image's sample photos, one source photo per class.

A newcomer's folder looks like this: a few dozen phone-like photos per class at assorted sizes and file types.
Each class is one photograph (an astronaut, a cup of coffee, a cat, ...), and its images are random crops of it
at random scales, so a model has to learn colour and texture from real pixels, not synthetic shapes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# the first six are colour photographs; the last four (three grey textures and a retina) make a ten-class set whose
# small crops are harder to tell apart
SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "brick", "grass",
           "gravel", "retina")
SUFFIXES = (".jpg", ".png", ".jpeg", ".webp")


def source_photo(name: str) -> np.ndarray:
    import skimage.data

    return np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB"))


def write_photo_folder(root: Path, classes: int = 6, per_class: tuple[int, int] = (40, 58), seed: int = 0,
                       long_side: tuple[int, int] = (100, 320), crop_share: tuple[float, float] = (0.35, 0.8)) -> Path:
    """ROOT/<class>/<n><suffix>: CLASSES classes of PER_CLASS (low, high) crops each, long sides in LONG_SIDE px; a
    crop's side is CROP_SHARE (low, high) of the photo's shorter side."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for name in SOURCES[:classes]:
        photo = source_photo(name)
        height, width = photo.shape[:2]
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(int(rng.integers(per_class[0], per_class[1] + 1))):
            side = int(rng.uniform(*crop_share) * min(height, width))
            aspect = rng.uniform(0.75, 1.33)
            crop_h, crop_w = min(height, int(side * aspect)), min(width, side)
            top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
            crop = Image.fromarray(photo[top:top + crop_h, left:left + crop_w])
            scale = rng.integers(*long_side) / max(crop.size)
            crop = crop.resize((max(8, round(crop.width * scale)), max(8, round(crop.height * scale))),
                               Image.Resampling.BICUBIC)
            suffix = SUFFIXES[i % len(SUFFIXES)]
            crop.save(folder / f"{i:03d}{suffix}", **({"quality": 90} if suffix in (".jpg", ".jpeg", ".webp") else {}))
    return root
