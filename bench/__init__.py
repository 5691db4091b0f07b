"""edgeship.bench: latency, throughput, memory and size of exported artifacts, here or on SSH targets.

Attributes load lazily so the benchmark agent (which ships to edge boards) imports only what it uses.
"""

_EXPORTS = {
    "bench_artifact": "harness", "summarize": "harness", "time_calls": "harness",
    "bench_run": "runner", "run_bench": "runner", "measure_cold_start": "coldstart",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
