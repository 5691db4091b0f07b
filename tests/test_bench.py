"""Bench harness: percentiles, run counts, and figures written into the report."""

import json
import time

import numpy as np
import pytest

from edgeship.bench.harness import summarize, time_calls


def test_summarize_percentiles_by_hand():
    times = np.arange(1, 101, dtype=float)[::-1]  # 100 .. 1 ms
    stats = summarize(times)
    ordered = np.sort(times)
    assert stats["latency_ms"]["p50"] == pytest.approx((ordered[49] + ordered[50]) / 2)
    assert stats["latency_ms"]["p90"] == pytest.approx(ordered[89] + 0.1 * (ordered[90] - ordered[89]))
    assert stats["latency_ms"]["min"] == 1.0
    assert stats["throughput_ips"] == pytest.approx(1000 / 50.5)
    assert summarize(times, batch=4)["throughput_ips"] == pytest.approx(4000 / 50.5)


def test_time_calls_runs_warmup_then_at_least_runs_and_min_seconds():
    calls = []
    times = time_calls(lambda: calls.append(1), warmup=3, runs=7)
    assert len(times) == 7 and len(calls) == 10
    started = time.perf_counter()
    times = time_calls(lambda: None, warmup=0, runs=1, min_seconds=0.05)
    assert time.perf_counter() - started >= 0.05 and len(times) > 1


def test_sleep_is_measured_as_its_duration():
    times = time_calls(lambda: time.sleep(0.002), warmup=1, runs=5)
    assert times.min() >= 2.0


def test_bench_cli_writes_latency_into_the_report(run_copy, cli, tmp_path):
    result = cli("bench", run_copy, "--runs", "20", "--warmup", "2", "--json", tmp_path / "bench.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((run_copy / "report.json").read_text())
    for artifact in report["artifacts"]:
        latency = artifact["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
        assert artifact["runs"] == 20 and artifact["load_ms"] > 0
        assert artifact["throughput_ips"] == pytest.approx(1000 / latency["mean"])
    assert "## Latency (batch 1)" in (run_copy / "report.md").read_text()
    assert json.loads((tmp_path / "bench.json").read_text())[0]["bench"]["runs"] == 20


def test_bench_a_lone_model_file(exported_run, cli):
    result = cli("bench", exported_run / "bundle" / "model_int8.tflite", "--runs", "10", "--warmup", "1")
    assert result.returncode == 0, result.stderr
    assert "model_int8.tflite  ok" in result.stdout


def test_cold_start_probe_runs_in_a_fresh_runtime_only_process(exported_run):
    from edgeship.bench.coldstart import measure_cold_start

    figures = measure_cold_start(exported_run / "bundle" / "model_int8.tflite")
    assert figures["tensorflow_imported"] is False  # this test process has TensorFlow; the probe must not
    parts = figures["import_s"] + figures["load_s"] + figures["first_inference_s"]
    assert figures["cold_start_s"] == pytest.approx(parts, rel=1e-6)
    assert figures["process_wall_s"] > figures["cold_start_s"]
    assert 0 < figures["peak_rss_mb"]
