"""Latency harness: load time, first inference, then warm-up and timed steady-state runs.

Runs only edgeship.runtime code, so the same harness can run on an edge board without TensorFlow.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeship.runtime.classifier import Classifier


def time_calls(call, warmup: int = 10, runs: int = 100, min_seconds: float = 0.0) -> np.ndarray:
    """Per-call wall times in ms, after `warmup` untimed calls; runs until both `runs` and
    `min_seconds` are reached."""
    for _ in range(warmup):
        call()
    times = []
    clock = time.perf_counter_ns
    deadline = clock() + int(min_seconds * 1e9)
    while len(times) < runs or clock() < deadline:
        start = clock()
        call()
        times.append(clock() - start)
    return np.asarray(times, dtype=np.float64) / 1e6


def summarize(times_ms: np.ndarray, batch: int = 1) -> dict:
    p50, p90, p99 = np.percentile(times_ms, [50, 90, 99])
    mean = float(times_ms.mean())
    return {
        "latency_ms": {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": mean,
                       "std": float(times_ms.std()), "min": float(times_ms.min())},
        "throughput_ips": batch * 1000.0 / mean if mean > 0 else None,
        "runs": int(times_ms.size),
    }


def sample_input(classifier: Classifier, batch: int = 1, seed: int = 0) -> np.ndarray:
    """Random pixels of the model's input size: CNN latency does not depend on image content."""
    spec = classifier.info.input
    return np.random.default_rng(seed).integers(0, 256, (batch, spec.height, spec.width, 3), dtype=np.uint8)


def bench_artifact(path: str | Path, artifact: str | None = None, warmup: int = 10, runs: int = 100,
                   min_seconds: float = 0.0, threads: int | None = None, batch: int = 1) -> dict:
    """Everything we time for one artifact: load, first inference, steady state."""
    started = time.perf_counter()
    classifier = Classifier.load(path, threads=threads, artifact=artifact)
    load_ms = (time.perf_counter() - started) * 1000.0
    x = sample_input(classifier, batch)
    started = time.perf_counter()
    classifier.predict_proba(x)
    first_ms = (time.perf_counter() - started) * 1000.0
    result = summarize(time_calls(lambda: classifier.predict_proba(x), warmup, runs, min_seconds), batch)
    result.update(load_ms=load_ms, first_inference_ms=first_ms, batch=batch, threads=threads,
                  runtime=classifier.session.implementation)
    return result
