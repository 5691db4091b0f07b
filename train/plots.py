"""Training-curve PNG from the CSV log (matplotlib, no display needed)."""

from __future__ import annotations

import csv
from pathlib import Path

from edgeship.runtime.fileio import atomic_write_bytes


def plot_history(history_csv: str | Path, png_path: str | Path) -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, metric in zip(axes, ("accuracy", "loss")):
        for prefix, style in (("", "-"), ("val_", "--")):
            key = prefix + metric
            if rows and key in rows[0]:
                axis.plot(epochs, [float(r[key]) for r in rows], style, marker="o", label=key)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(png_path, buffer.getvalue())


def _figure_png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix, labels, png_path: str | Path) -> Path:
    """Row-normalized confusion matrix (rows: true class), counts written in the cells."""
    import numpy as np

    plt = _pyplot()
    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(12.0, 2.0 + 0.45 * len(labels))
    fig, axis = plt.subplots(figsize=(size, size))
    axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axis.set_yticks(range(len(labels)), labels, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(labels) <= 30:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if matrix[i, j]:
                    axis.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6,
                              color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    return atomic_write_bytes(png_path, _figure_png(fig))


def plot_image_grid(images, captions, png_path: str | Path, columns: int = 4) -> Path:
    """Thumbnails with a caption each (e.g. the worst misclassified test images)."""
    plt = _pyplot()
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(images):
            axis.imshow(images[index])
            axis.set_title(captions[index], fontsize=7)
    fig.tight_layout()
    return atomic_write_bytes(png_path, _figure_png(fig))
