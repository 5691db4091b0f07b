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
