"""Small promises of the redesigns: one name per concept; records and configs are values, not dicts or bags."""

from __future__ import annotations

import re
import warnings

import pytest


def test_classifier_runtime_is_the_one_name(exported_run):
    from edgeship.runtime import Classifier

    classifier = Classifier.load(exported_run / "bundle", artifact="tflite")
    from edgeship.runtime.tflite_session import TFLITE_INTERPRETERS

    assert classifier.runtime in {label for _, label in TFLITE_INTERPRETERS}
    assert not hasattr(classifier, "implementation")  # the session's word; the contract says `runtime`
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        classifier.runtime  # the contract's name never warns


def test_train_options_are_plain_values_checked_once(capsys):
    from edgeship.cli import main
    from edgeship.train.limits import LIMITS, LR_SCHEDULES, STRATEGIES
    from edgeship.runtime.errors import UsageError
    from edgeship.train import HParams, TrainConfig
    from edgeship.train.strategy import STRATEGIES as BUILDERS

    config = TrainConfig.from_flat(backbone="mobilenet_v2", alpha=0.35, epochs=3)
    assert (config.model.backbone, config.model.alpha, config.hparams.epochs) == ("mobilenet_v2", 0.35, 3)
    assert config == TrainConfig(backbone="mobilenet_v2", alpha=0.35, epochs=3)  # the old spelling still works
    with pytest.raises(AttributeError, match="is a value"):
        config.epoch = 5  # a typo cannot add an attribute nobody reads
    with pytest.raises(TypeError, match="'epoch'"):
        TrainConfig.from_flat(epoch=5)
    with pytest.raises(AttributeError):
        config.epochs  # read config.hparams.epochs: one name per option
    # one range per option: the group refuses it when made, and the CLI refuses it with the same words
    for name, bad in (("epochs", 0), ("learning_rate", float("inf")), ("patience", 0)):
        limit = LIMITS[name]
        with pytest.raises(UsageError, match=re.escape(f"{limit.flag} must be {limit.expected}")):
            TrainConfig.from_flat(**{name: bad})
        with pytest.raises(SystemExit) as refused:
            main(["train", "data", "--out", "runs/x", limit.flag, str(bad)])
        assert refused.value.code == 2
        assert f"expected {limit.expected}" in capsys.readouterr().err
    with pytest.raises(UsageError, match="unknown LR schedule"):
        HParams(lr_schedule="step")
    assert tuple(BUILDERS)[1:] == STRATEGIES  # the CLI's choices are the strategies train can build
    with pytest.raises(SystemExit):
        main(["train", "data", "--out", "runs/x", "--lr-schedule", "step"])
    refusal = capsys.readouterr().err
    assert all(name in refusal for name in LR_SCHEDULES), refusal


def test_int8_trials_are_recipes_and_float_layers_keep_the_base_recipe(monkeypatch, tmp_path):
    """The float-layer trials start from the recipe that did best (its calibration images too), and labels
    come from recipes instead of being parsed back into settings."""
    import tempfile
    from types import SimpleNamespace

    import numpy as np
    import tensorflow as tf
    from edgeship.export import int8_strategies
    from edgeship.export.int8_strategies import OnnxStrategy, TFLiteStrategy
    from edgeship.export.quant_search import Candidate, Recipe

    seen = []
    monkeypatch.setattr(int8_strategies.tflite_convert, "int8_converter",
                        lambda job, images=None, activations16=False: seen.append(images) or object())
    monkeypatch.setattr(int8_strategies.tflite_convert, "full_int8", lambda job, images=None: b"more")
    monkeypatch.setattr(int8_strategies.tflite_convert, "convert_quiet", lambda converter: b"16x8")

    class Debugger:  # stands in for tf.lite.experimental.QuantizationDebugger
        def __init__(self, converter, debug_dataset, debug_options):
            self.nodes = debug_options.denylisted_nodes

        def get_nondebug_quantized_model(self):
            return ",".join(self.nodes).encode()

    monkeypatch.setattr(tf.lite.experimental, "QuantizationDebugger", Debugger)
    # these stand-in jobs have no Keras model: the data-free steps (CLE, bias correction) have their own tests
    monkeypatch.setattr(int8_strategies._Equalizing, "_data_free", lambda self: [])
    job = SimpleNamespace(calibration=np.zeros((4, 8, 8, 3), np.uint8),
                          more_calibration=lambda: np.ones((12, 8, 8, 3), np.uint8))
    tflite = TFLiteStrategy(job)
    more, sixteen = list(tflite.variants())
    assert (more.label, more.calibration) == ("more calibration images", "min-max, 12 calib images")
    assert (sixteen.label, sixteen.recipe.activation_bits, sixteen.io) == ("16x8 (int16 activations)", 16, "float")
    trial = tflite.with_float_layers(more, ["conv1", "conv2"])
    assert len(seen[-1]) == 12 and trial.data == b"conv1,conv2"  # the 12 images of the base, not the 4 plain ones
    assert (trial.label, trial.calibration, trial.float_layers) == ("2 node(s) float", "min-max, 12 calib images",
                                                                   ["conv1", "conv2"])
    tflite.with_float_layers(Candidate(tflite.plain, b"plain"), ["conv1"])
    assert seen[-1] is job.calibration

    asked = []
    monkeypatch.setattr(int8_strategies.onnx_convert, "quantize_qdq",
                        lambda prepared, out, images, method, per_channel, nodes: asked.append(
                            (method, per_channel, nodes)) or b"qdq")
    onnx_job = SimpleNamespace(calibration=job.calibration, prepared_onnx=lambda: tmp_path / "prepared.onnx",
                               temp_dir=lambda prefix: tempfile.TemporaryDirectory(prefix=prefix, dir=tmp_path))
    onnx = OnnxStrategy(onnx_job)
    variants = list(onnx.variants())
    assert [v.label for v in variants] == ["Entropy, per-channel weights", "Percentile, per-channel weights",
                                           "MinMax, per-tensor weights"]
    trial = onnx.with_float_layers(variants[2], ["Conv_3"])
    assert asked[-1] == ("MinMax", False, ["Conv_3"]) and trial.recipe == Recipe("MinMax", False, float_nodes=("Conv_3",))
    onnx.close()


def test_the_tflite_graph_read_from_the_flatbuffer_is_the_interpreters(exported_run):
    """The per-layer diagnosis reads ops from the FlatBuffer, not the interpreter's private op list: both give
    the same ops, tensors and scales for a full-int8 model."""
    from edgeship.export.quant_diagnosis import tflite_graph
    from edgeship.runtime.tflite_session import _tflite_interpreter

    model = (exported_run / "bundle" / "model_int8.tflite").read_bytes()
    graph, scales = tflite_graph(model)
    interpreter = _tflite_interpreter()[0](model_content=model)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the test, not the library, may read the private list
    assert [(n.op, n.inputs, n.outputs) for n in graph.nodes] == [
        (op["op_name"], [tensors[i]["name"] for i in op["inputs"] if i >= 0 and i in tensors],
         [tensors[i]["name"] for i in op["outputs"] if i >= 0]) for op in ops]
    assert scales == {t["name"]: float(t["quantization"][0]) for t in tensors.values() if t["quantization"][0]}
    assert {"CONV_2D", "FULLY_CONNECTED", "QUANTIZE"} <= {n.op for n in graph.nodes}


def test_reports_are_typed_inside_and_dicts_only_in_the_file(exported_run, tmp_path):
    """load_report gives records all the way down; write_report writes the same JSON back; a dict is read
    only through from_json (the old dict habits are gone)."""
    import json

    from edgeship.core.records import LatencySettings, ParityReport, Readiness, Reference, Speedup
    from edgeship.core.report import load_report
    from edgeship.core.report_store import write_report
    from edgeship.export.gate import GateThresholds, evaluate_gate

    report, _ = load_report(exported_run)
    rows = {row.name: row for row in report.artifacts}
    assert isinstance(report.reference, Reference) and report.reference.accuracy > 0.5
    assert isinstance(rows["tflite_int8"].latency_settings, LatencySettings)
    settings = rows["tflite_int8"].latency_settings  # export's quick timing, or a bench of the shared run since
    assert settings.source in ("export", "bench") and (settings.source == "bench" or settings.threads == 1)
    assert isinstance(rows["tflite_int8"].speedup, Speedup) and rows["tflite_int8"].speedup.over == "tflite"
    assert isinstance(rows["onnx_int8"].readiness, Readiness) and set(rows["onnx_int8"].readiness.accelerators) == {
        "nnapi", "coreml_mlprogram", "coreml_neuralnetwork"}
    original = json.loads((exported_run / "report.json").read_text())
    write_report(report, tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text()) == original
    typed = [v.line() for v in evaluate_gate(report, GateThresholds())]
    assert [v.line() for v in evaluate_gate(ParityReport.from_json(original), GateThresholds())] == typed
    with pytest.raises(TypeError, match="ParityReport.from_json"):
        evaluate_gate(original, GateThresholds())
    with pytest.raises(TypeError):
        report["reference"]  # noqa: B018 - records are read by attribute
    assert ParityReport.from_json(original).to_json() == original
