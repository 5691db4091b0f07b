"""Benchmark a run's artifacts into its report, or lone model files into a table."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from edgeship.export.report import load_report, write_report
from edgeship.runtime.environment import fingerprint
from edgeship.runtime.errors import EdgeshipError
from edgeship.runtime.progress import progress

from .harness import bench_artifact

BENCH_FIELDS = ("latency_ms", "throughput_ips", "load_ms", "first_inference_ms", "runs", "batch", "threads",
                "runtime")


def bench_run(run: str | Path, runs: int = 100, warmup: int = 10, min_seconds: float = 0.0,
              threads: int | None = None, show_progress: bool = True) -> tuple[dict, Path]:
    """Time every artifact listed in RUN/report.json and write the figures back into the report."""
    report, report_path = load_report(run)
    base = report_path.parent
    artifacts = report["artifacts"]
    for record in progress(artifacts, total=len(artifacts), desc="bench", enabled=show_progress):
        if record.get("status", "ok") != "ok":
            continue
        try:
            result = bench_artifact(base / record["path"], warmup=warmup, runs=runs, min_seconds=min_seconds,
                                    threads=threads)
        except EdgeshipError as exc:
            record["bench_error"] = str(exc)
            continue
        record.pop("bench_error", None)
        record.update({k: result[k] for k in BENCH_FIELDS})
    report["bench"] = {"runs": runs, "warmup": warmup, "min_seconds": min_seconds, "threads": threads, "batch": 1}
    report["environment"] = fingerprint()
    return report, write_report(report, report_path)


def bench_files(paths: Sequence[str | Path], runs: int = 100, warmup: int = 10, min_seconds: float = 0.0,
                threads: int | None = None, show_progress: bool = True) -> list[dict]:
    rows = []
    for path in progress(list(paths), total=len(paths), desc="bench", enabled=show_progress):
        row = {"name": Path(path).name, "path": str(path), "size_bytes": Path(path).stat().st_size if Path(path).is_file() else None}
        try:
            row.update(bench_artifact(path, warmup=warmup, runs=runs, min_seconds=min_seconds, threads=threads))
            row["status"] = "ok"
        except EdgeshipError as exc:
            row.update(status="failed", error=str(exc))
        rows.append(row)
    return rows
