"""A Food-101-shaped dataset drawn procedurally: the scale benchmark's input, written outside the repository.

Same layout as the real one (`meta/classes.txt`, `meta/train.txt`, `meta/test.txt` listing `class/id`,
`images/<class>/<id>.jpg`), 101 classes, 3/4 train and 1/4 test per class, 512 px JPEGs like the originals.
Each class has its own palette and shape, so a head on random backbone features learns something and the
gate's chance-level check does not fire; each image varies position, size, count and noise.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CLASSES = 101
RECIPE = {"version": 1, "classes": CLASSES, "size": 512, "quality": 90}
SHAPES = ("ellipse", "rectangle", "triangle", "stripes", "rings", "dots")


def class_names(n: int = CLASSES) -> list[str]:
    return [f"dish_{i:03d}" for i in range(n)]


def _draw(class_index: int, image_index: int, size: int):
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(class_index * 1_000_003 + image_index)
    hue = (class_index * 0.61803398875) % 1.0
    shape = SHAPES[class_index % len(SHAPES)]
    base = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.35 + 0.1 * rng.random(), 0.75))
    accent = tuple(int(255 * c) for c in colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.8, 0.4 + 0.5 * rng.random()))
    image = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(size // 16, size // 4))
        box = (x - r, y - r, x + r, y + r)
        if shape == "ellipse":
            draw.ellipse(box, fill=accent)
        elif shape == "rectangle":
            draw.rectangle(box, fill=accent)
        elif shape == "triangle":
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=accent)
        elif shape == "stripes":
            for k in range(-r, r, 12):
                draw.line([(x + k, y - r), (x + k + r // 2, y + r)], fill=accent, width=5)
        elif shape == "rings":
            for k in range(r, 4, -14):
                draw.ellipse((x - k, y - k, x + k, y + k), outline=accent, width=4)
        else:
            for _ in range(12):
                dx, dy = rng.integers(-r, r, 2)
                draw.ellipse((x + dx - 6, y + dy - 6, x + dx + 6, y + dy + 6), fill=accent)
    noise = rng.integers(-12, 13, (size // 8, size // 8, 3), dtype=np.int16)
    pixels = np.asarray(image, dtype=np.int16) + np.kron(noise, np.ones((8, 8, 1), dtype=np.int16))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _write_class(job: tuple[str, int, int, int, int]) -> None:
    root, class_index, first, count, size = job
    folder = Path(root) / "images" / class_names()[class_index]
    folder.mkdir(parents=True, exist_ok=True)
    for image_index in range(first, first + count):
        path = folder / f"{image_index}.jpg"
        if not path.is_file():
            _draw(class_index, image_index, size).save(path, quality=RECIPE["quality"])


def write_food101_shaped(root: str | Path, n_images: int, workers: int | None = None, progress=None) -> Path:
    """Write (or complete) a tree of N_IMAGES (a multiple of 101 is exact). Reuses images already there."""
    root = Path(root)
    per_class = max(4, math.ceil(n_images / CLASSES))
    n_train = per_class * 3 // 4
    names = class_names()
    (root / "meta").mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), c, 0, per_class, RECIPE["size"]) for c in range(CLASSES)]
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for done, _ in enumerate(pool.map(_write_class, jobs), 1):
            if progress is not None:
                progress(done, len(jobs))
    lines = {"train": [], "test": []}
    for name in names:
        for i in range(per_class):
            lines["train" if i < n_train else "test"].append(f"{name}/{i}")
    (root / "meta" / "classes.txt").write_text("\n".join(names) + "\n")
    for split, rows in lines.items():
        (root / "meta" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    (root / "meta" / "recipe.json").write_text(json.dumps({**RECIPE, "per_class": per_class}))
    return root
