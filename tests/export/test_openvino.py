"""OpenVINO as a third runtime for the .tflite and .onnx artifacts: predict, parity against each file's own runtime,
and bench rows that say which runtime ran them."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("openvino")


def _test_pixels(run, n=None):
    from edgeship.core.pixels import load_pixels
    from edgeship.core.splits import SplitManifest
    from edgeship.runtime import Bundle

    bundle = Bundle.load(run / "bundle")
    paths, labels = SplitManifest.read(run / "bundle" / "splits.csv").paths_and_indices("test", bundle.info.labels)
    return load_pixels(paths[:n] if n else paths, bundle.info.input, show_progress=False), labels[:n] if n else labels


def test_parity_reports_each_file_under_openvino_against_its_own_runtime(exported_run):
    """The report's figures, computed again here with the two runtimes side by side."""
    from edgeship.runtime import Classifier

    report = json.loads((exported_run / "report.json").read_text())
    rows = {a["name"]: a for a in report["artifacts"]}
    pixels, _ = _test_pixels(exported_run)
    for name in ("tflite", "tflite_int8", "onnx", "onnx_int8"):
        (other,) = rows[name]["other_runtimes"]
        assert other["runtime"].startswith("openvino ")
        own = Classifier.load(exported_run / "bundle", artifact=name).predict_proba(pixels)
        there = Classifier.load(exported_run / "bundle", artifact=name, backend="openvino").predict_proba(pixels)
        assert other["agreement"] == float(np.mean(own.argmax(1) == there.argmax(1)))
        assert other["max_abs_prob_diff"] == pytest.approx(float(np.abs(there.astype(np.float64) - own).max()), abs=1e-6)
        if rows[name]["precision"] == "float32":
            assert other["max_abs_prob_diff"] < 1e-4  # float32 arithmetic, not OpenVINO's default bf16 here
    assert "other_runtimes" not in rows["keras"]
    assert "## Other runtimes" in (exported_run / "report.md").read_text()


def test_bench_rows_say_openvino_ran_them_and_predict_takes_the_backend(exported_run, tmp_path, cli):
    out = tmp_path / "bench"
    done = cli("bench", exported_run / "bundle", "--backend", "openvino,tflite", "--runs", "3", "--threads", "1",
               "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads((out / "bench.json").read_text())["rows"]
    openvino = [r for r in rows if r["backend"] == "openvino"]
    assert {r["name"] for r in openvino} >= {"tflite", "tflite_int8", "onnx", "onnx_int8"}
    assert all(r["status"] == "ok" and r["runtime"].startswith("openvino ") for r in openvino)
    assert sum(r["pareto"] for r in rows if r["status"] == "ok") >= 1  # one frontier across runtimes
    from edgeship.core.splits import SplitManifest

    image = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[0].path
    answer = cli("predict", exported_run / "bundle", image, "--backend", "openvino", "--artifact", "onnx", "--json")
    assert answer.returncode == 0, answer.stderr
    native = cli("predict", exported_run / "bundle", image, "--artifact", "onnx", "--json")
    assert json.loads(answer.stdout.splitlines()[0])["predictions"][0]["label"] == \
        json.loads(native.stdout.splitlines()[0])["predictions"][0]["label"]


def test_without_openvino_its_rows_are_unavailable_not_failed(exported_run, monkeypatch):
    from edgeship.runtime.backends import BACKENDS
    from edgeship.runtime.errors import UsageError

    monkeypatch.setitem(sys.modules, "openvino", None)  # as on a machine without the extra
    with pytest.raises(UsageError, match="pip install edgeship\\[openvino\\]"):
        BACKENDS["openvino"].open(exported_run / "bundle" / "model_float32.onnx")
