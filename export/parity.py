"""Parity: every artifact against the Keras model, on the test split the artifact never saw."""

from __future__ import annotations

import numpy as np


def compare_predictions(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, delta in percentage points, top-1 agreement and probability differences."""
    if reference.shape != candidate.shape:
        raise ValueError(f"prediction shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    ref_top, cand_top = reference.argmax(axis=1), candidate.argmax(axis=1)
    ref_acc = float(np.mean(ref_top == labels))
    acc = float(np.mean(cand_top == labels))
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    return {
        "accuracy": acc,
        "accuracy_delta_pp": round((acc - ref_acc) * 100.0, 6),
        "agreement": float(np.mean(ref_top == cand_top)),
        "max_abs_prob_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_prob_diff": float(diff.mean()) if diff.size else 0.0,
        "n_disagree": int(np.sum(ref_top != cand_top)),
    }


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probabilities.argmax(axis=1) == labels))
