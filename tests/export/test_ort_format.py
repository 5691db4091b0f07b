"""ONNX Runtime's mobile format: the int8 and float32 ONNX artifacts with their batch fixed, as `.ort` files that
go through parity, readiness, the speed-up table and bench like every registered format."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ort_run(exported_run):
    return exported_run  # exported with every registered format, the opt-in .ort rows included


def test_ort_files_keep_the_onnx_artifacts_answers_with_the_batch_fixed(ort_run):
    from edgeship.core.pixels import load_pixels
    from edgeship.core.splits import SplitManifest
    from edgeship.runtime import Bundle, Classifier

    report = json.loads((ort_run / "report.json").read_text())
    rows = {a["name"]: a for a in report["artifacts"]}
    for name, onnx in (("ort", "onnx"), ("ort_int8", "onnx_int8")):
        assert rows[name]["status"] == "ok" and rows[name]["format"] == "ort", rows[name]
        assert rows[name]["agreement"] == rows[onnx]["agreement"] and rows[name]["accuracy"] == rows[onnx]["accuracy"]
        assert (ort_run / "bundle" / f"model_{'int8' if name.endswith('int8') else 'float32'}.ort").read_bytes()[4:8] == b"ORTM"
    bundle = Bundle.load(ort_run / "bundle")
    paths, _ = SplitManifest.read(ort_run / "bundle" / "splits.csv").paths_and_indices("test", bundle.info.labels)
    pixels = load_pixels(paths[:5], bundle.info.input, show_progress=False)
    mobile = Classifier.load(ort_run / "bundle" / "model_int8.ort")  # a lone .ort: labels from its own metadata
    assert mobile.labels == bundle.info.labels and mobile.session.input_shape[0] == 1  # batch fixed at 1
    plain = Classifier.load(ort_run / "bundle", artifact="onnx_int8")
    # five images through a batch-1 model; at most one output step apart: the .ort keeps the QDQ graph that the
    # runtime emulates in float here, where onnx_int8 runs fused integer kernels, so roundings differ by a step
    np.testing.assert_allclose(mobile.predict_proba(pixels), plain.predict_proba(pixels), atol=1 / 255 + 1e-6)


def test_ort_rows_get_readiness_from_the_ort_file_and_a_speedup(ort_run):
    report = json.loads((ort_run / "report.json").read_text())
    rows = {a["name"]: a for a in report["artifacts"]}
    readiness = rows["ort_int8"]["readiness"]
    assert set(readiness) == {"nnapi", "coreml_mlprogram", "coreml_neuralnetwork"}
    assert readiness["nnapi"]["ready"] and "batch fixed" in readiness["nnapi"]["tool"]
    assert "DequantizeLinear" in readiness["coreml_neuralnetwork"]["unsupported_ops"]  # QDQ on CoreML: CPU
    assert rows["ort_int8"]["speedup"]["over"] == "ort"  # against the float32 .ort, as onnx_int8 against onnx


def test_ort_formats_are_opt_in_and_listed(cli):
    from edgeship.export.formats import DEFAULT_FORMATS, resolve_formats

    assert "ort_int8" not in DEFAULT_FORMATS and "ort_int8" in [f.name for f in resolve_formats(["all"])]
    listing = cli("formats").stdout
    line = next(row for row in listing.splitlines() if row.startswith("ort_int8"))
    assert "model_int8.ort" in line and "when named" in line
