"""`bench --profile`'s fidelity (issue 24): the node times of MobileNetV2 (224 px, α 1.0) sum to within 15 % of the
whole model's p50 measured beside them. A speed figure, so it lives here and not in `make test`: on a shared
machine another process's burst lands on the ops or on the whole model, and the ratio then swings."""

import pytest
from edgeship.bench.matrix import Artifact
from edgeship.bench.profiling import profile_artifact

from .conftest import report_line


@pytest.mark.parametrize("name", ["tflite", "tflite_int8", "onnx", "onnx_int8"])
def test_node_times_sum_to_the_whole_models_p50(benchmark, mobilenet_artifacts, name, capsys):
    path = mobilenet_artifacts[name]
    fmt = "tflite" if path.suffix == ".tflite" else "onnx"
    profile = benchmark.pedantic(lambda: profile_artifact(Artifact("mobilenet_v2", path, name, fmt), threads=1,
                                                          runs=40), rounds=1, iterations=1)
    ratio = profile.total_ms / profile.p50_ms
    benchmark.group = "profile fidelity"
    benchmark.extra_info.update(nodes_ms=profile.total_ms, p50_ms=profile.p50_ms, ratio=ratio)
    report_line(capsys, f"profile {name}: nodes {profile.total_ms:.2f} ms, p50 {profile.p50_ms:.2f} ms, "
                        f"ratio {ratio:.3f}")
    assert ratio == pytest.approx(1.0, abs=0.15), (profile.total_ms, profile.p50_ms)
