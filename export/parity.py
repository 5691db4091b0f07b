"""Parity: every artifact against the Keras model, on the test split the artifact never saw.

Besides accuracy and agreement, two statistics make a gate honest on small test sets: a paired bootstrap
confidence interval for the accuracy delta, and the exact McNemar test on the discordant images.
"""

from __future__ import annotations

import numpy as np
from edgeship.core.metrics import majority_accuracy  # noqa: F401 - re-exported for parity's callers

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_BLOCK_ELEMENTS = 4_000_000
CONFIDENCE = 0.95
EPS = 1e-7


def paired_bootstrap_delta_ci(ref_correct: np.ndarray, cand_correct: np.ndarray, samples: int = BOOTSTRAP_SAMPLES,
                              confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """CI of accuracy(candidate) - accuracy(reference) in percentage points, resampling images (pairs)."""
    ref, cand = np.asarray(ref_correct, float), np.asarray(cand_correct, float)
    if ref.size == 0:
        return (0.0, 0.0)
    from scipy.stats import bootstrap

    # paired=True resamples images, not the two models' results apart; resamples are drawn in batches of rows
    # (the generator yields the same numbers as one big draw), so memory stays ~32 MB instead of samples x
    # images x 8 bytes (1.2 GB at Food-101's 25,250 test images). Percentile intervals: the figures a
    # hand-written loop over rng.integers gives, to the last digit (tests/test_parity_statistics.py).
    result = bootstrap((ref, cand), _delta_pp, paired=True, vectorized=True, n_resamples=samples,
                       confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
                       batch=max(1, BOOTSTRAP_BLOCK_ELEMENTS // ref.size))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _delta_pp(ref: np.ndarray, cand: np.ndarray, axis: int = -1) -> np.ndarray:
    return (cand.mean(axis=axis) - ref.mean(axis=axis)) * 100.0


def mcnemar_exact_p(ref_correct: np.ndarray, cand_correct: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: binomial test of the discordant pairs against p = 0.5."""
    ref, cand = np.asarray(ref_correct, bool), np.asarray(cand_correct, bool)
    b = int(np.sum(ref & ~cand))  # Keras right, artifact wrong
    c = int(np.sum(~ref & cand))  # Keras wrong, artifact right
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest  # exact at any n (the hand-written sum overflowed past 1,023 images)

    return min(1.0, float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue))


def top_k_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 5) -> float | None:
    """Fraction of images whose top-k *sets* of classes are the same for both models, over the images where
    both sets are defined (see top_k_defined); None when there is none."""
    defined = top_k_defined(reference, k) & top_k_defined(candidate, k)
    if not defined.any():
        return None
    ref = np.sort(np.argsort(-reference[defined], axis=1, kind="stable")[:, :k], axis=1)
    cand = np.sort(np.argsort(-candidate[defined], axis=1, kind="stable")[:, :k], axis=1)
    return float(np.mean(np.all(ref == cand, axis=1)))


def top_k_defined(scores: np.ndarray, k: int) -> np.ndarray:
    """Per image: is its top-k set well defined, i.e. is the k-th score above the (k+1)-th? Quantized outputs
    come in steps of 1/256: with 10 classes most of them tie at 0, and which tied class enters a "top 5"
    is arbitrary, so a set comparison there measures the tie-breaking, not the model."""
    if scores.shape[1] <= k:
        return np.zeros(len(scores), dtype=bool)
    ordered = -np.sort(-scores, axis=1)
    return ordered[:, k - 1] > ordered[:, k]


def mean_kl_divergence(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean over images of KL(reference || candidate), in nats."""
    p = np.clip(reference.astype(np.float64), EPS, 1.0)
    q = np.clip(candidate.astype(np.float64), EPS, 1.0)
    p, q = p / p.sum(axis=1, keepdims=True), q / q.sum(axis=1, keepdims=True)
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))


def per_class_delta(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray, names) -> list[dict]:
    """Accuracy per true class for both models, worst delta first."""
    rows = []
    for index, name in enumerate(names):
        mask = labels == index
        if not mask.any():
            continue
        ref_acc = float(np.mean(reference[mask].argmax(1) == index))
        acc = float(np.mean(candidate[mask].argmax(1) == index))
        rows.append({"class": name, "n": int(mask.sum()), "keras_accuracy": ref_acc, "accuracy": acc,
                     "delta_pp": (acc - ref_acc) * 100.0})
    return sorted(rows, key=lambda r: (r["delta_pp"], r["class"]))


def compare_predictions(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray,
                        names=None) -> dict:
    """Every parity figure of one artifact against the reference on the same images."""
    if reference.shape != candidate.shape:
        raise ValueError(f"prediction shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    ref_top, cand_top = reference.argmax(axis=1), candidate.argmax(axis=1)
    ref_correct, cand_correct = ref_top == labels, cand_top == labels
    ref_acc, acc = float(np.mean(ref_correct)), float(np.mean(cand_correct))
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    low, high = paired_bootstrap_delta_ci(ref_correct, cand_correct)
    figures = {
        "accuracy": acc,
        "accuracy_delta_pp": round((acc - ref_acc) * 100.0, 6),
        "accuracy_delta_ci95_pp": [round(low, 6), round(high, 6)],
        "mcnemar_p": mcnemar_exact_p(ref_correct, cand_correct),
        "agreement": float(np.mean(ref_top == cand_top)),
        "top5_agreement": top_k_agreement(reference, candidate, 5),
        "top5_defined": (float(np.mean(top_k_defined(reference, 5) & top_k_defined(candidate, 5)))
                         if reference.shape[1] > 5 else None),
        "max_abs_prob_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_prob_diff": float(diff.mean()) if diff.size else 0.0,
        "kl_divergence": mean_kl_divergence(reference, candidate),
        "n_disagree": int(np.sum(ref_top != cand_top)),
        "flipped": [int(i) for i in np.flatnonzero(ref_correct & ~cand_correct)],
    }
    if names is not None:
        figures["per_class"] = per_class_delta(reference, candidate, labels, names)
    return figures


def describe_flipped(indices, shown_paths, labels: np.ndarray, candidate: np.ndarray, names) -> list[dict]:
    """{path, label, predicted} for each flipped image index (see compare_predictions)."""
    return [{"path": str(shown_paths[i]), "label": names[labels[i]], "predicted": names[int(candidate[i].argmax())]}
            for i in indices]


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probabilities.argmax(axis=1) == labels))
