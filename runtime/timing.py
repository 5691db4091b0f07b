"""The timing loop: bench's harness (here and on a board) and export's quick speed check share it."""

from __future__ import annotations

import time

import numpy as np


def time_calls(call, warmup: int = 10, runs: int = 100, min_seconds: float = 0.0,
               clock=time.perf_counter_ns) -> np.ndarray:
    """Per-call wall times in ms, after `warmup` untimed calls; runs until both `runs` and
    `min_seconds` are reached. CLOCK (nanoseconds) is injectable, so tests never depend on this machine's
    speed."""
    for _ in range(warmup):
        call()
    times = []
    deadline = clock() + int(min_seconds * 1e9)
    while len(times) < runs or clock() < deadline:
        start = clock()
        call()
        times.append(clock() - start)
    return np.asarray(times, dtype=np.float64) / 1e6


def session_times(session, x: np.ndarray, warmup: int = 10, runs: int = 100, min_seconds: float = 0.0) -> np.ndarray:
    """What edgeship times, per run (ms): a session's inference on a batch already converted to the model's
    input dtype, as TFLite's benchmark_model does; turning pixels into that dtype happens once, before."""
    tensor = session.prepare(x)
    return time_calls(lambda: session.run_prepared(tensor), warmup, runs, min_seconds)
