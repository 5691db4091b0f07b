"""Warnings a training run gives when its figures would describe a useless model: validation at chance, a
frozen backbone that gives every image the same features, predictions collapsed onto a few classes. Each
returns the warning's text or None; the phases log it and the bundle records it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from edgeship.core.metrics import describe_collapse, never_predicted, predictions_collapsed

CONSTANT_FEATURES = 1e-6


def chance_warning(history_csv: Path, n_classes: int, majority: float) -> str | None:
    """A warning when validation accuracy stays at chance while training accuracy rises: the model (or its
    BatchNorm statistics) does not generalise, and every later figure would describe a useless model."""
    if not history_csv.is_file():
        return None
    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        val = max(float(r["val_accuracy"]) for r in rows)
        train_acc = float(rows[-1]["accuracy"])
    except (KeyError, ValueError):
        return None
    chance = max(1.0 / n_classes, majority)
    if val <= chance + 0.5 * (1 - chance) * 0.2 and train_acc >= val + 0.2:
        return (f"validation accuracy stays near chance ({val:.1%}, chance {chance:.1%}) while training accuracy "
                f"reached {train_acc:.1%}: the model does not generalise (from-scratch BatchNorm statistics, too "
                f"little data, or a learning rate too high); do not ship it")
    return None


def constant_features_warning(features: np.ndarray, backbone: str, weights: str | None) -> str | None:
    """A frozen Keras application with random weights computes features of ~1e-10 for every image (its
    BatchNorm statistics are the untrained 0/1): a head on them learns nothing. Measured here on
    MobileNetV2, MobileNetV3-Small and EfficientNet-B0 at 224 px; small_cnn's random features do vary."""
    sample = np.asarray(features[:2048], dtype=np.float64)
    spread = float(sample.std(axis=0).max()) if len(sample) > 1 else 1.0
    if spread >= CONSTANT_FEATURES:
        return None
    return (f"the frozen backbone gives every image the same features (largest spread {spread:.1e}): "
            f"{backbone} with weights={weights or 'none'} has nothing to offer a head; pass "
            f"--weights imagenet (or a weights file), or train it whole without --freeze-backbone")


def collapse_warning(val_probs: np.ndarray, val_labels: np.ndarray, labels) -> str | None:
    never, present = never_predicted(val_probs.argmax(axis=1), val_labels, labels), len(set(val_labels.tolist()))
    if not predictions_collapsed(never, present):
        return None
    return (f"{describe_collapse(never, present, 'validation')}: its predictions "
            f"collapsed onto a few classes; train longer (--epochs, --patience) or with more data before "
            f"shipping it (the gate fails such a model unless --allow-collapsed)")
