"""What a trained model gets right and wrong on the test split: confusion matrix, per-class precision /
recall, the most confident mistakes, and the unknown-class threshold calibrated on the validation split."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from edgeship.runtime.preprocess import prepare_image
from edgeship.runtime.spec import InputSpec

from .plots import plot_confusion, plot_image_grid


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def per_class_metrics(matrix: np.ndarray, labels: Sequence[str]) -> list[dict]:
    """Precision, recall, F1 and support per class (0 where undefined)."""
    rows = []
    for i, label in enumerate(labels):
        tp = int(matrix[i, i])
        predicted, actual = int(matrix[:, i].sum()), int(matrix[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"label": label, "precision": precision, "recall": recall, "f1": f1, "support": actual})
    return rows


def worst_mistakes(probs: np.ndarray, true: np.ndarray, limit: int = 16) -> list[int]:
    """Indices of wrong predictions, most confident first."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != true)
    return [int(i) for i in wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:limit]]


def unknown_threshold(val_probs: np.ndarray, recall: float) -> float:
    """The confidence below which a prediction becomes `unknown`, chosen so that `recall` of the
    validation images (all from known classes) keep their prediction."""
    return float(np.quantile(val_probs.max(axis=1), 1.0 - recall, method="lower"))


def rejection_rate(probs: np.ndarray, threshold: float) -> float:
    return float(np.mean(probs.max(axis=1) < threshold)) if len(probs) else 0.0


def evaluate_test(probs: np.ndarray, true: np.ndarray, labels: Sequence[str], paths: Sequence[Path],
                  spec: InputSpec, out_dir: Path) -> dict:
    """Figures and PNGs (confusion.png, worst.png) for the training report."""
    matrix = confusion_matrix(true, probs.argmax(axis=1), len(labels))
    plot_confusion(matrix, labels, out_dir / "confusion.png")
    worst = worst_mistakes(probs, true)
    if worst:
        images = [prepare_image(paths[i], spec) for i in worst]
        captions = [f"{labels[true[i]]} -> {labels[probs[i].argmax()]} ({probs[i].max():.2f})" for i in worst]
        plot_image_grid(images, captions, out_dir / "worst.png")
    return {
        "accuracy": float(np.mean(probs.argmax(axis=1) == true)) if len(true) else 0.0,
        "n_test": int(len(true)),
        "confusion_matrix": matrix.tolist(),
        "per_class": per_class_metrics(matrix, labels),
        "worst": [{"path": str(paths[i]), "true": labels[true[i]], "predicted": labels[probs[i].argmax()],
                   "confidence": float(probs[i].max())} for i in worst],
        "confusion_png": "confusion.png",
        "worst_png": "worst.png" if worst else None,
    }
