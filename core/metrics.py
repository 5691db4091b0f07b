"""Figures about a split's labels that train (its chance warning) and export (the gate's floor) share."""

from __future__ import annotations

import numpy as np


def majority_accuracy(labels: np.ndarray) -> float:
    """Accuracy of always answering the most common class: a model at or below it learned nothing usable."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0


def never_predicted(predicted: np.ndarray, labels: np.ndarray, names) -> list[str]:
    """The classes present in LABELS that PREDICTED (top-1 indices) never names: a model that answers only a few
    of its classes (collapsed predictions) can sit just above chance, where accuracy alone looks harmless."""
    predicted, labels = np.asarray(predicted).reshape(-1), np.asarray(labels).reshape(-1)
    present = sorted(set(labels.tolist()))
    seen = set(predicted.tolist())
    return [names[i] for i in present if i not in seen]


def collapse_figures(probs: np.ndarray, labels: np.ndarray, names) -> dict:
    """The reference record's `never_predicted` and `n_classes_in_test` (export and compare write them, the gate
    reads them): which test classes the model's top-1 never names, out of how many the split holds."""
    labels = np.asarray(labels).reshape(-1)
    return {"never_predicted": never_predicted(np.asarray(probs).argmax(axis=1), labels, names),
            "n_classes_in_test": len(set(labels.tolist()))}


def predictions_collapsed(never: list, present: int) -> bool:
    """More than a third of the classes present are never predicted: 2 of 6 answered is collapse; one class of
    ten that a small split never shows the model is not."""
    return present > 1 and len(never) > present / 3


def describe_collapse(never: list, present: int, split: str) -> str:
    shown = ", ".join(map(str, never[:6])) + (" …" if len(never) > 6 else "")
    return (f"the model predicts only {present - len(never)} of the {present} classes on the {split} split "
            f"(never: {shown})")
