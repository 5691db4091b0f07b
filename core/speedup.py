"""Is int8 worth it here? Each quantized artifact's speed-up over its float32 sibling on the same machine.

Export times every on-device artifact briefly (1 thread, batch 1) so the report always has the figure; a
later `edgeship bench` of the run replaces those latencies with its own and the speed-ups are recomputed
from them. The sibling is the float32 artifact of the same file format (tflite_int8 -> tflite)."""

from __future__ import annotations

import numpy as np
from edgeship.runtime.predictor import Timed
from edgeship.runtime.timing import session_times

from .records import LatencySettings, ParityRow, Speedup

QUICK_WARMUP, QUICK_RUNS, QUICK_THREADS = 10, 50, 1


def quick_latency(predictor, image: np.ndarray, sha256: str | None) -> tuple[dict | None, LatencySettings | None]:
    """(latency_ms, its settings) for a device predictor at 1 thread on one image; (None, None) for others."""
    if not isinstance(predictor, Timed):
        return None, None
    times = session_times(predictor.timing_session(QUICK_THREADS), image, QUICK_WARMUP, QUICK_RUNS)
    latency = {"p50": float(np.median(times)), "p90": float(np.percentile(times, 90)),
               "p99": float(np.percentile(times, 99))}
    return latency, LatencySettings.measured("export", QUICK_RUNS, QUICK_WARMUP, QUICK_THREADS, sha256)


def attach_speedups(rows: list[ParityRow]) -> None:
    """Set `speedup` on every quantized on-device row whose float32 sibling was timed the same way."""
    timed = {(r.format, r.precision): r for r in rows if r.ok and _p50(r) is not None}
    for row in rows:  # only on-device artifacts are timed (Keras and SavedModel rows have no latency)
        row.speedup = None
        if not row.ok or row.precision in (None, "float32"):
            continue
        sibling = timed.get((row.format, "float32"))
        own, base = _p50(row), _p50(sibling) if sibling else None
        if own is None or base is None or not own > 0:
            continue
        if _threads(row) != _threads(sibling):
            continue
        row.speedup = Speedup(over=sibling.name, value=base / own, p50_ms=own, float32_p50_ms=base,
                              threads=_threads(row), source=row.latency_settings.source or "bench")


def _p50(row: ParityRow | None) -> float | None:
    value = (row.latency_ms or {}).get("p50") if row is not None else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _threads(row: ParityRow):
    return row.latency_settings.threads if row.latency_settings else None
