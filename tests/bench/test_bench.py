"""Bench harness: percentiles, run counts, and figures written into the report."""

import json
import time
from pathlib import Path

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


class _FakeClock:
    """A nanosecond clock that each call advances by STEP: timings that never depend on this machine."""

    def __init__(self, step_ns: int):
        self.now, self.step = 0, step_ns

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def test_time_calls_runs_warmup_then_at_least_runs_and_min_seconds():
    calls = []
    times = time_calls(lambda: calls.append(1), warmup=3, runs=7)
    assert len(times) == 7 and len(calls) == 10
    # every clock reading advances 1 ms: the loop stops at the first reading past min_seconds, not before
    clock = _FakeClock(1_000_000)
    times = time_calls(lambda: None, warmup=0, runs=1, min_seconds=0.05, clock=clock)
    assert len(times) > 1 and np.all(times == 1.0)
    assert 0.05 <= (clock.now - 1_000_000) / 1e9 <= 0.05 + 0.003  # one iteration reads the clock three times
    clock = _FakeClock(1_000_000)
    times = time_calls(lambda: None, warmup=0, runs=40, min_seconds=0.05, clock=clock)
    assert len(times) == 40 and clock.now / 1e9 > 0.05  # runs wins when it ends later


def test_sleep_is_measured_as_its_duration():
    times = time_calls(lambda: time.sleep(0.002), warmup=1, runs=5)
    assert times.min() >= 2.0


def test_bench_cli_writes_latency_into_the_report(run_copy, cli, tmp_path):
    result = cli("bench", run_copy, "--runs", "20", "--warmup", "2", "--json", tmp_path / "bench.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((run_copy / "report.json").read_text())
    for artifact in report["artifacts"]:
        if artifact["format"] in ("saved_model", "tflite_int8_c"):  # runs its own graph: timed only with
            assert "latency_ms" not in artifact  # --trust-code; the C source of tflite_int8: timed as that file
            continue
        latency = artifact["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
        assert artifact["latency_settings"]["runs"] == 20 and artifact["load_ms"] > 0
        assert artifact["throughput_ips"] == pytest.approx(1000 / latency["mean"])
    assert "## Latency (batch 1)" in (run_copy / "report.md").read_text()
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["settings"]["runs"] == 20 and bench == json.loads((run_copy / "bench.json").read_text())
    rows = {(r["name"], r["backend"], r.get("provider")): r for r in bench["rows"]}
    assert rows[("keras", "keras", None)]["status"] == "ok"  # the TensorFlow reference row
    untrusted = rows[("saved_model", "tensorflow", None)]
    assert untrusted["status"] == "unavailable" and "--trust-code" in untrusted["error"]
    assert rows[("onnx", "onnxruntime", "cuda")]["status"] in ("ok", "unavailable")
    by_name = {a["name"]: a for a in report["artifacts"]}
    for (name, backend, provider), row in rows.items():
        if row["status"] == "ok" and name in by_name:
            assert row["accuracy"] == by_name[name]["accuracy"]  # accuracy beside speed
    assert any(r.get("pareto") for r in bench["rows"])
    csv_lines = (run_copy / "bench.csv").read_text().splitlines()
    assert csv_lines[0].startswith("target,id,name") and len(csv_lines) == len(bench["rows"]) + 1
    assert (run_copy / "bench_pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_matrix_threads_and_batches(exported_run, cli, tmp_path):
    out = tmp_path / "m.json"
    result = cli("bench", exported_run / "bundle" / "model_int8.tflite", "--threads", "1,2", "--batch", "1,4",
                 "--runs", "5", "--warmup", "1", "--json", out)
    assert result.returncode == 0, result.stderr
    rows = [r for r in json.loads(out.read_text())["rows"] if r["backend"] == "tflite"]  # OpenVINO has its own
    assert sorted((r["threads"], r["batch"]) for r in rows) == [(1, 1), (1, 4), (2, 1), (2, 4)]
    for row in rows:
        assert row["throughput_ips"] == pytest.approx(1000 * row["batch"] / row["latency_ms"]["mean"])
        assert row["peak_rss_mb"] > 0 and row["first_inference_ms"] > 0


def test_a_model_that_fails_to_load_is_a_failed_row(exported_run, cli, tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3" * 10)
    out = tmp_path / "b.json"
    result = cli("bench", broken, exported_run / "bundle" / "model_int8.tflite", "--runs", "3", "--warmup", "0",
                 "--json", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    status = {r["name"]: r["status"] for r in json.loads(out.read_text())["rows"]}
    assert status == {"broken.tflite": "failed", "model_int8.tflite": "ok"}


def test_compare_exit_code_follows_the_baseline_figures(exported_run, cli, tmp_path):
    """The CLI's --compare path with baselines of known figures: one a million times slower than any machine
    runs this model (never a regression), one a million times faster (always one), so the verdict never
    depends on how busy this machine is. The ratio rule itself is tested on fixed rows below."""
    model = exported_run / "bundle" / "model_int8.tflite"
    base = tmp_path / "base.json"
    assert cli("bench", model, "--runs", "5", "--warmup", "1", "--json", base).returncode == 0
    measured = json.loads(base.read_text())

    def baseline(name: str, p50_ms: float) -> Path:
        known = json.loads(json.dumps(measured))
        for row in known["rows"]:
            row["latency_ms"] = {"p25": p50_ms * 0.99, "p50": p50_ms, "p75": p50_ms * 1.01}
        path = tmp_path / name
        path.write_text(json.dumps(known))
        return path

    same = cli("bench", model, "--runs", "5", "--warmup", "1", "--compare", baseline("slow.json", 1e6),
               "--max-slowdown", "50%")
    assert same.returncode == 0, same.stdout + same.stderr
    slower = cli("bench", model, "--runs", "5", "--warmup", "1", "--compare", baseline("fast.json", 1e-6),
                 "--max-slowdown", "50%")
    assert slower.returncode == 1
    assert "REGRESSION local model_int8.tflite|tflite" in slower.stderr and "REGRESSION" in slower.stdout


def test_cold_start_probe_runs_in_a_fresh_runtime_only_process(exported_run):
    from edgeship.bench.coldstart import measure_cold_start

    figures = measure_cold_start(exported_run / "bundle" / "model_int8.tflite")
    assert figures["tensorflow_imported"] is False  # this test process has TensorFlow; the probe must not
    parts = figures["import_s"] + figures["load_s"] + figures["first_inference_s"]
    assert figures["cold_start_s"] == pytest.approx(parts, rel=1e-6)
    assert figures["process_wall_s"] > figures["cold_start_s"]
    assert 0 < figures["peak_rss_mb"]


def _row(target, id_, p50, accuracy=None, p25=None, p75=None, batch=1):
    from edgeship.core.records import BenchRow

    return BenchRow(id_, id_, "tflite", "ok", target, batch, accuracy=accuracy,
                    latency_ms={"p50": p50, "p25": p25 or p50 * 0.95, "p75": p75 or p50 * 1.05})


def test_pareto_front_by_hand():
    from edgeship.bench.results import mark_pareto

    rows = [_row("local", "fast_bad", 1.0, 0.90), _row("local", "slow_good", 5.0, 0.99),
            _row("local", "dominated", 6.0, 0.95), _row("local", "tie_slower", 5.5, 0.99),
            _row("pi", "only_on_pi", 50.0, 0.80)]
    mark_pareto(rows)
    assert {r.id: r.pareto for r in rows} == {"fast_bad": True, "slow_good": True, "dominated": False,
                                                    "tie_slower": False, "only_on_pi": True}


def test_compare_needs_both_threshold_and_noise():
    from edgeship.bench.results import compare_to_baseline, parse_slowdown

    baseline = [_row("local", "a", 1.0, p75=1.05), _row("local", "b", 1.0, p75=1.5), _row("local", "c", 1.0)]
    rows = [_row("local", "a", 1.2, p25=1.1),   # 20 % slower, outside the noise: regression
            _row("local", "b", 1.2, p25=1.1),   # 20 % slower but inside the baseline's spread: noise
            _row("local", "c", 1.05, p25=1.0)]  # 5 %: under the threshold
    regressions = compare_to_baseline(rows, baseline, parse_slowdown("10%"))
    assert [r.id for r in regressions] == ["a"]
    assert rows[0].baseline_ratio == pytest.approx(1.2)
    assert parse_slowdown("0.25") == 0.25


def test_ctrl_c_keeps_the_rows_already_measured(exported_run):
    from edgeship.bench.agent import run_cases
    from edgeship.bench.matrix import artifacts_of, build_cases

    cases = build_cases(artifacts_of(exported_run / "bundle"), backend="tflite", runs=3, warmup=0)
    seen = []

    def interrupt_after_two(row):
        seen.append(row)
        if len(seen) == 2:
            raise KeyboardInterrupt

    rows, interrupted = run_cases(cases, on_row=interrupt_after_two)
    assert interrupted and len(rows) == 2 and len(cases) == 4
    assert all(r["status"] == "ok" and r["latency_ms"]["p50"] > 0 for r in rows)


def test_pytest_plugin_fixtures_run_a_users_latency_test(exported_run, pytester):
    pytester.makepyfile('''
        def test_latency(benchmark, edgeship_classifier, edgeship_input):
            probs = benchmark(edgeship_classifier.predict_proba, edgeship_input)
            assert probs.shape == (1, 4) and edgeship_input.shape == (1, 32, 32, 3)
    ''')
    models = [exported_run / "bundle" / "model_int8.tflite", exported_run / "bundle" / "model_float32.onnx"]
    result = pytester.runpytest_subprocess(*[f"--edgeship-model={m}" for m in models], "-p", "no:cacheprovider",
                                           "--benchmark-disable")
    result.assert_outcomes(passed=2)
    without = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-disable")
    without.assert_outcomes(skipped=1)
