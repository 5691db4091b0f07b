"""edgeship.bench: latency, throughput and load time of exported artifacts."""

from .harness import bench_artifact, summarize, time_calls
from .runner import bench_files, bench_run

__all__ = ["bench_artifact", "summarize", "time_calls", "bench_run", "bench_files"]
