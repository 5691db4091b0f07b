"""Parity statistics against hand-computed small cases."""

import itertools
import math

import numpy as np
import pytest
from edgeship.export.parity import (
    compare_predictions,
    mcnemar_exact_p,
    mean_kl_divergence,
    paired_bootstrap_delta_ci,
    per_class_delta,
    top_k_agreement,
    top_k_defined,
)


def test_mcnemar_exact_by_hand():
    # Keras right / artifact wrong on 1 image, the reverse on 5: b=1, c=5, n=6.
    ref = np.array([1, 0, 0, 0, 0, 0, 1, 1], bool)
    cand = np.array([0, 1, 1, 1, 1, 1, 1, 0], bool)
    ref[7], cand[7] = False, False  # concordant pairs do not count
    assert mcnemar_exact_p(ref, cand) == pytest.approx(2 * (math.comb(6, 0) + math.comb(6, 1)) / 2**6)  # 0.21875
    assert mcnemar_exact_p(ref, ref) == 1.0
    assert mcnemar_exact_p(np.ones(10, bool), np.zeros(10, bool)) == pytest.approx(2 / 2**10)


def test_paired_bootstrap_matches_exact_enumeration():
    """With 4 images every resample is one of 4^4 equally likely index tuples: enumerate them all."""
    ref = np.array([1, 1, 0, 1], bool)
    cand = np.array([1, 0, 0, 1], bool)
    exact = sorted((cand[list(t)].mean() - ref[list(t)].mean()) * 100 for t in itertools.product(range(4), repeat=4))
    low, high = paired_bootstrap_delta_ci(ref, cand, samples=50000, seed=1)
    assert low == pytest.approx(np.percentile(exact, 2.5), abs=0.01)
    assert high == pytest.approx(np.percentile(exact, 97.5), abs=0.01)
    assert paired_bootstrap_delta_ci(ref, ref) == (0.0, 0.0)


def test_paired_bootstrap_gives_the_hand_written_loops_figures():
    """scipy.stats.bootstrap (paired, percentile) draws the same resamples as a loop over rng.integers: the
    report's intervals did not move when the hand-written loop gave way to the library."""
    rng = np.random.default_rng(3)
    ref = rng.random(359) < 0.9
    cand = ref.copy()
    cand[rng.random(359) < 0.05] ^= True
    index = np.random.default_rng(0).integers(0, 359, (2000, 359))
    deltas = (cand[index].mean(axis=1) - ref[index].mean(axis=1)) * 100.0
    assert paired_bootstrap_delta_ci(ref, cand) == tuple(np.percentile(deltas, [2.5, 97.5]))


def test_top5_kl_and_per_class_by_hand():
    ref = np.array([[0.5, 0.2, 0.1, 0.1, 0.06, 0.04], [0.9, 0.02, 0.02, 0.02, 0.02, 0.02]])
    cand = np.array([[0.5, 0.2, 0.1, 0.06, 0.1, 0.04], [0.02, 0.9, 0.02, 0.02, 0.02, 0.02]])
    # image 0: top-5 sets are equal ({0,1,2,3,4} vs {0,1,2,4,3}); image 1: five classes tie at 0.02 in both,
    # so its top-5 set is not defined and it is left out (not counted as an agreement made by tie-breaking)
    assert top_k_agreement(ref, cand, 5) == 1.0
    assert top_k_defined(ref, 5).tolist() == [True, False]
    assert top_k_agreement(ref, cand, 1) == 0.5
    expected_kl = np.mean([np.sum(p * np.log(p / q)) for p, q in zip(ref, cand)])
    assert mean_kl_divergence(ref, cand) == pytest.approx(expected_kl, rel=1e-6)
    rows = per_class_delta(ref, cand, np.array([0, 0]), ["a", "b", "c", "d", "e", "f"])
    assert rows == [{"class": "a", "n": 2, "keras_accuracy": 1.0, "accuracy": 0.5, "delta_pp": -50.0}]


def test_compare_predictions_lists_flipped_images():
    ref = np.eye(3)[[0, 1, 2, 0]]
    cand = np.eye(3)[[0, 2, 2, 1]]
    figures = compare_predictions(ref, cand, np.array([0, 1, 2, 1]), ["x", "y", "z"])
    assert figures["flipped"] == [1]  # image 3 is the reverse (Keras wrong, artifact right): not a flip
    assert figures["accuracy_delta_pp"] == pytest.approx(0.0)
    assert figures["top5_agreement"] is None and figures["top5_defined"] is None  # fewer than six classes


def test_top5_agreement_ignores_ties_of_quantized_outputs():
    """Ten classes, uint8-quantized outputs: most classes sit at 0, so the old "top-5 set" was arbitrary (the
    demo reported 18.66 % next to 100 % top-1 agreement). Counted where defined, it measures the model."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 10)) * 4
    ref = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    quantized = np.round(ref * 256) / 256  # what a uint8 output with scale 1/256 gives back
    defined = top_k_defined(ref, 5) & top_k_defined(quantized, 5)
    assert 0 < defined.mean() < 1  # some images tie at the 5th score, some do not
    expected = np.mean([set(np.argsort(-r)[:5]) == set(np.argsort(-q)[:5])
                        for r, q in zip(ref[defined], quantized[defined])])
    assert top_k_agreement(ref, quantized, 5) == pytest.approx(expected)
    assert expected == 1.0  # rounding never reorders scores a whole step apart
    figures = compare_predictions(ref, quantized, ref.argmax(axis=1), [str(i) for i in range(10)])
    assert figures["top5_defined"] == pytest.approx(defined.mean())


def test_mcnemar_exact_at_food101_scale():
    """Thousands of discordant images (the scale benchmark's 25,250-image split had them) used to overflow 2.0**n."""
    import math

    def exact(b, c):  # integer arithmetic, correct at any n
        n = b + c
        return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / (1 << n))

    for b, c in ((7, 3), (30, 12), (600, 560), (1500, 1400)):
        ref = np.array([True] * b + [False] * c)
        assert mcnemar_exact_p(ref, ~ref) == pytest.approx(exact(b, c), rel=1e-9)
    ref = np.array([True] * 3000 + [False] * 2000)
    assert 0.0 <= mcnemar_exact_p(ref, ~ref) < 1e-40
