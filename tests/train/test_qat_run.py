"""`edgeship qat RUN --out NEW`: a run like any other whose int8 formats come from the ranges quantization-aware
training learned. Its provenance names the run it came from; its float model.keras is the one the user trained
and stays the reference; each artifact is also set against the fake-quantized model (the second Δ); tflite_int8
and onnx_int8 made from the same ranges agree with each other."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest


def _test_split(run):
    from edgeship.core.pixels import load_split
    from edgeship.core.splits import SplitManifest
    from edgeship.runtime.spec import Bundle

    info = Bundle.load(run / "bundle").info
    return load_split(SplitManifest.read(run / "bundle" / "splits.csv"), info.labels, info.input, "test")


def _keras_probs(path, images):
    from edgeship.core.tensorflow import load_keras_model

    return load_keras_model(path).predict(images, verbose=0)


def test_qat_command_writes_a_run_that_names_its_source_and_keeps_the_float_model(trained_run, tmp_path, cli):
    from edgeship.runtime.fileio import sha256_file

    out = tmp_path / "qat"
    done = cli("qat", trained_run, "--out", out, "--epochs", "1")  # as the README shows it
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"edgeship export {out}" in done.stdout
    manifest = json.loads((out / "bundle" / "edgeship.json").read_text())
    record = manifest["provenance"]["quantization_aware"]
    assert record["from_run"] == str(trained_run) and record["epochs"] == 1
    assert record["from_model_sha256"] == sha256_file(trained_run / "bundle" / "model.keras")
    assert record["model_sha256"] == sha256_file(out / "bundle" / record["model"])
    assert len(record["val_accuracy_by_epoch"]) == 2 and record["chosen_epoch"] in (0, 1)
    assert record["val_accuracy_by_epoch"][record["chosen_epoch"]] == max(record["val_accuracy_by_epoch"])
    # the float model is the user's, byte for byte; nothing was exported yet
    assert (out / "bundle" / "model.keras").read_bytes() == (trained_run / "bundle" / "model.keras").read_bytes()
    assert manifest["artifacts"] == []
    again = cli("qat", trained_run, "--out", out)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_qat_run_exports_from_learned_ranges_with_both_deltas(qat_exported_run):
    from edgeship.runtime import Classifier
    from edgeship.runtime.fileio import sha256_file

    report = json.loads((qat_exported_run / "report.json").read_text())
    rows = {row["name"]: row for row in report["artifacts"]}
    images, labels = _test_split(qat_exported_run)
    float_probs = _keras_probs(qat_exported_run / "bundle" / "model.keras", images)
    fake_probs = _keras_probs(qat_exported_run / "bundle" / "model_qat.keras", images)
    fake_reference = report["fake_quant_reference"]
    assert fake_reference["sha256"] == sha256_file(qat_exported_run / fake_reference["path"])
    assert fake_reference["accuracy"] == pytest.approx(np.mean(fake_probs.argmax(1) == labels))
    assert report["reference"]["accuracy"] == pytest.approx(np.mean(float_probs.argmax(1) == labels))
    tops = {}
    for name in ("tflite_int8", "onnx_int8"):
        probs = Classifier.load(qat_exported_run / "bundle", artifact=name).predict_proba(images)
        tops[name] = probs.argmax(1)
        accuracy = np.mean(tops[name] == labels)
        # the first Δ against the float model the user trained, the second against the fake-quantized one
        assert rows[name]["accuracy_delta_pp"] == pytest.approx((accuracy - np.mean(float_probs.argmax(1) == labels))
                                                                * 100, abs=1e-3)
        second = rows[name]["vs_fake_quant"]
        assert second["agreement"] == pytest.approx(np.mean(tops[name] == fake_probs.argmax(1)))
        assert second["accuracy_delta_pp"] == pytest.approx((accuracy - fake_reference["accuracy"]) * 100, abs=1e-3)
        assert second["agreement"] >= 0.97  # the int8 file computes what the fake-quantized model computes
    assert np.mean(tops["tflite_int8"] == tops["onnx_int8"]) >= 0.98  # one set of ranges, two runtimes


def test_qat_int8_files_take_their_scales_from_the_learned_ranges(qat_exported_run):
    """No representative dataset re-calibrated them: the input's scale is the fake-quantized input range's, and
    the ONNX file's QuantizeLinear scales are the TFLite file's."""
    import onnx
    from onnx import numpy_helper

    from edgeship.runtime.tflite_session import _tflite_interpreter

    data = (qat_exported_run / "bundle" / "model_int8.tflite").read_bytes()
    interpreter = _tflite_interpreter()[0](model_content=data)
    tflite_scales = {round(float(t["quantization"][0]), 9) for t in interpreter.get_tensor_details()
                     if t["quantization"][0] and t["dtype"] in (np.int8, np.uint8)}
    assert interpreter.get_input_details()[0]["quantization"] == pytest.approx((1.0, 0))  # 0-255 pixels, as learned
    model = onnx.load(str(qat_exported_run / "bundle" / "model_int8.onnx"))
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    onnx_scales = {round(float(constants[n.input[1]]), 9) for n in model.graph.node
                   if n.op_type == "QuantizeLinear" and n.input[1] in constants and constants[n.input[1]].size == 1}
    assert onnx_scales and onnx_scales <= tflite_scales


def test_a_changed_qat_model_is_refused_in_one_line(qat_exported_run, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(qat_exported_run, run)
    with open(run / "bundle" / "model_qat.keras", "ab") as handle:
        handle.write(b"\0")
    done = cli("export", run, "--formats", "tflite_int8")
    assert done.returncode == 2 and "model_qat.keras: changed since `edgeship qat` wrote it" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_gate_refuses_a_qat_run_whose_fake_quantized_model_changed_after_the_report(qat_exported_run, tmp_path,
                                                                                     cli):
    """The second Δ and the gate's agreement check come from model_qat.keras: the report binds them to its sha256."""
    run = tmp_path / "run"
    shutil.copytree(qat_exported_run, run)
    assert cli("gate", run, "--max-drop", "100", "--min-agreement", "0").returncode == 0
    with open(run / "bundle" / "model_qat.keras", "ab") as handle:
        handle.write(b"\0")
    done = cli("gate", run, "--max-drop", "100", "--min-agreement", "0")
    assert done.returncode == 2 and "bundle/model_qat.keras changed after the report was written" in done.stderr


def test_max_drop_on_a_qat_run_says_the_ladder_is_not_climbed(qat_exported_run, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(qat_exported_run, run)
    done = cli("export", run, "--formats", "tflite_int8", "--max-drop", "0.5")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "come from quantization-aware training" in done.stderr
    row = next(a for a in json.loads((run / "report.json").read_text())["artifacts"] if a["name"] == "tflite_int8")
    assert row.get("quantization") is None and row["vs_fake_quant"]["agreement"] >= 0.97


def test_the_cli_defaults_are_core_qat_s():
    """cli/qat.py writes the defaults out so that `edgeship qat --help` does not import TensorFlow: they must not drift."""
    from edgeship.cli import qat as cli_qat
    from edgeship.core import qat

    assert (cli_qat.EPOCHS, cli_qat.LEARNING_RATE) == (qat.EPOCHS, qat.LEARNING_RATE)
