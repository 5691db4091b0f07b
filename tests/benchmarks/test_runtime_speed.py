"""Runtime benchmarks: latency per format and thread count, Classifier overhead over a bare invoke() loop,
cold start and peak RSS without and with TensorFlow. Figures, not asserts: they go into the README."""

import numpy as np
import pytest
from edgeship.bench.coldstart import measure_cold_start
from edgeship.bench.harness import steady_state_times, time_calls
from edgeship.runtime import Classifier

from .conftest import report_line


def _input(classifier):
    spec = classifier.info.input
    return np.random.default_rng(0).integers(0, 256, (1, spec.height, spec.width, 3), dtype=np.uint8)


def test_latency(benchmark, edgeship_classifier, edgeship_input, edgeship_threads):
    """Uses the fixtures of edgeship's own pytest plugin, as a user's latency test would."""
    benchmark.group = f"MobileNetV2 224px batch 1, {edgeship_threads} thread(s)"
    benchmark.extra_info.update(format=edgeship_classifier.artifact, threads=edgeship_threads)
    benchmark.pedantic(edgeship_classifier.predict_proba, args=(edgeship_input,), rounds=60, warmup_rounds=10)


@pytest.mark.parametrize("measured", ["edgeship bench", "Classifier.predict_proba"])
@pytest.mark.parametrize("name", ["tflite", "tflite_int8"])
def test_overhead_over_bare_invoke(benchmark, mobilenet_artifacts, name, measured, capsys):
    """Against a bare set_tensor/invoke/get_tensor loop on the same interpreter and input, in 40
    interleaved blocks of 10 calls so machine noise hits both alike:
    - what `edgeship bench` times (harness.steady_state_times), goal <= 1.03 (issue 6);
    - Classifier.predict_proba on prepared pixels, which also converts them to the input dtype, goal <= 1.05 (issue 5)."""
    # One interpreter thread: with two threads on a 2-core machine any other process makes latency bimodal,
    # and the medians then swing by 10 %; the harness's own overhead does not depend on the thread count.
    classifier = Classifier.load(mobilenet_artifacts[name], threads=1)
    x = _input(classifier)
    session = classifier.session
    interpreter, tensor = session._interpreter, session.prepare(x)

    def bare():
        interpreter.set_tensor(session._in_index, tensor)
        interpreter.invoke()
        return interpreter.get_tensor(session._out_index)

    ours, theirs = [], []

    def measure_ours():
        if measured == "edgeship bench":
            return steady_state_times(classifier, x, warmup=2, runs=10)
        return time_calls(lambda: classifier.predict_proba(x), warmup=2, runs=10)

    for block in range(40):  # alternate which side goes first: no order bias
        if block % 2:
            theirs.append(time_calls(bare, warmup=2, runs=10))
            ours.append(measure_ours())
        else:
            ours.append(measure_ours())
            theirs.append(time_calls(bare, warmup=2, runs=10))
    ratio = float(np.median(np.concatenate(ours)) / np.median(np.concatenate(theirs)))
    benchmark.extra_info.update(ratio_vs_bare_invoke=ratio)
    benchmark.group = "overhead"
    benchmark.pedantic(classifier.predict_proba, args=(x,), rounds=20, warmup_rounds=2)
    report_line(capsys, f"{name}: {measured} / bare invoke median = {ratio:.3f}")


def test_cold_start_and_peak_rss(benchmark, mobilenet_artifacts, capsys):
    model = mobilenet_artifacts["tflite_int8"]
    runtime_only = [measure_cold_start(model) for _ in range(3)]
    with_tf = [measure_cold_start(model, import_tensorflow=True) for _ in range(2)]
    best = min(runtime_only, key=lambda r: r["cold_start_s"])
    best_tf = min(with_tf, key=lambda r: r["cold_start_s"])
    rss_ratio = best["peak_rss_mb"] / best_tf["peak_rss_mb"]
    benchmark.extra_info.update(runtime_only=best, with_tensorflow=best_tf, rss_ratio=rss_ratio)
    benchmark.group = "cold start"
    benchmark.pedantic(lambda: None, rounds=1)
    report_line(capsys, f"cold start runtime-only: import {best['import_s']:.3f} s + load {best['load_s']:.3f} s + "
                        f"first {best['first_inference_s']:.3f} s = {best['cold_start_s']:.3f} s "
                        f"(process {best['process_wall_s']:.2f} s), peak RSS {best['peak_rss_mb']:.0f} MB")
    report_line(capsys, f"cold start with TensorFlow imported: {best_tf['cold_start_s']:.3f} s "
                        f"(process {best_tf['process_wall_s']:.2f} s), peak RSS {best_tf['peak_rss_mb']:.0f} MB; "
                        f"RSS ratio {rss_ratio:.2f}")

