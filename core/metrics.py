"""Figures about a split's labels that train (its chance warning) and export (the gate's floor) share."""

from __future__ import annotations

import numpy as np


def majority_accuracy(labels: np.ndarray) -> float:
    """Accuracy of always answering the most common class: a model at or below it learned nothing usable."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0
