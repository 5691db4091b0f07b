"""The embedded default dataset: scikit-learn's 1,797 real handwritten-digit scans as PNG folders.

Writing them as ordinary class folders means the demo exercises exactly the layout a user brings.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from edgeship.runtime.fileio import atomic_write_bytes, atomic_write_text
from PIL import Image

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DONE_MARKER = ".edgeship-digits-complete"


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_digits_dataset(root: str | Path, size: int = 32, per_class: int | None = None,
                         classes: int = 10) -> Path:
    """Write the digits as RGB PNGs, `size` px, into ROOT/<class>/NNNN.png. Idempotent.

    `per_class` and `classes` cut it down for quick tests.
    """
    from sklearn.datasets import load_digits

    root = Path(root)
    marker = root / DONE_MARKER
    wanted = f"{size} {per_class} {classes}"
    if marker.is_file() and marker.read_text().strip() == wanted:
        return root
    digits = load_digits()
    written = {name: 0 for name in CLASS_NAMES[:classes]}
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        if target >= classes:
            continue
        name = CLASS_NAMES[target]
        if per_class is not None and written[name] >= per_class:
            continue
        gray = np.clip(pixels * (255.0 / 16.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(gray).resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
        atomic_write_bytes(root / name / f"{index:04d}.png", _encode_png(image))
        written[name] += 1
    atomic_write_text(root / "classes.txt", "\n".join(written) + "\n")  # label order zero..nine
    atomic_write_text(marker, wanted + "\n")
    return root
