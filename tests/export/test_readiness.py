"""Device readiness: the vendors' tools say whether a phone accelerator takes each artifact, the report carries
it, and `gate --require-gpu-delegate` fails what would fall back to the CPU."""

import json
import re
import subprocess
import sys

import pytest
from edgeship.core.records import ParityReport
from edgeship.export.gate import GateThresholds, evaluate_gate, resolve_thresholds
from edgeship.export.readiness import gpu_delegate_verdict, onnx_readiness, readiness
from edgeship.runtime.errors import UsageError


@pytest.fixture(scope="module")
def topk_tflite(tmp_path_factory):
    """A float TFLite model with TOPK_V2, an op the GPU delegate does not take."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def top3(x):
        return tf.nn.softmax(tf.math.top_k(x, 3).values)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([top3.get_concrete_function()], top3)
    path = tmp_path_factory.mktemp("readiness") / "topk.tflite"
    path.write_bytes(converter.convert())
    return path


def test_tflite_gpu_delegate_verdicts(exported_run, topk_tflite):
    bundle = exported_run / "bundle"
    for name in ("model_float32.tflite", "model_int8.tflite"):
        entry = readiness("tflite", bundle / name).accelerators["gpu_delegate"]
        assert entry.ready and entry.ops > 3 and not entry.unsupported_ops, (name, entry)
    entry = readiness("tflite", topk_tflite).accelerators["gpu_delegate"]
    assert not entry.ready and entry.unsupported_ops == ["TOPK_V2"] and entry.ops == 2
    assert "TOPK_V2 (op #0)" in entry.issues[0]


def test_analyzer_warnings_count_when_the_wheel_has_the_table():
    """Analyzer output as a TFLite build with the delegate's table prints it: its warning alone makes it not ready."""
    text = ("Subgraph#0 main(T#0) -> [T#2]\n  Op#0 CONV_2D(T#0, T#1) -> [T#2]\n"
            "GPU COMPATIBILITY WARNING: Not supported dilation for CONV_2D\n\n"
            "GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 0 with TFLite runtime\n")
    entry = gpu_delegate_verdict(text, "tensorflow test")
    assert not entry["ready"] and entry["issues"] == ["Not supported dilation for CONV_2D"] and "note" not in entry
    assert not gpu_delegate_verdict("no operators here", "tensorflow test")["ready"]


def _tool_partitions(model) -> dict[str, tuple[int, int, int]]:
    """(partitions, supported nodes, nodes) per EP, read from what the ORT tool itself prints (fixed-shape pass)."""
    out = subprocess.run([sys.executable, "-m", "onnxruntime.tools.check_onnx_model_mobile_usability", str(model)],
                         capture_output=True, text=True, timeout=300)
    figures, ep = {}, None
    for line in (out.stdout + out.stderr).splitlines():
        if match := re.search(r"Checking (NNAPI|CoreML NeuralNetwork|CoreML MLProgram)$", line):
            ep = match.group(1)
        elif match := re.search(r"(\d+) partitions with a total of (\d+)/(\d+) nodes", line):
            figures[ep] = tuple(int(g) for g in match.groups())  # the last (fixed-shape) pass wins
    return figures


def test_onnx_partitions_match_the_tool_run_on_its_own(exported_run):
    """Our figures come from ORT's checker functions; the same tool run as a program prints the same partitions."""
    model = exported_run / "bundle" / "model_int8.onnx"
    ours = onnx_readiness(model)
    tool = _tool_partitions(model)
    names = {"nnapi": "NNAPI", "coreml_neuralnetwork": "CoreML NeuralNetwork", "coreml_mlprogram": "CoreML MLProgram"}
    for key, ep in names.items():
        entry = ours[key]
        assert (entry["partitions"], entry["supported_nodes"], entry["nodes"]) == tool[ep], (key, entry, tool)
        assert entry["ready"] == (entry["partitions"] == 1 and entry["coverage"] > 0.75)
    # QDQ int8 is a poor fit for CoreML (many single-node partitions); NNAPI takes the whole graph once batch is fixed
    assert ours["nnapi"]["ready"] and ours["nnapi"]["needs_fixed_shapes"]
    assert not ours["coreml_neuralnetwork"]["ready"] and ours["coreml_neuralnetwork"]["partitions"] > 2


def test_report_carries_readiness_and_the_gate_requires_it(exported_run, tmp_path, cli):
    report = json.loads((exported_run / "report.json").read_text())
    rows = {a["name"]: a for a in report["artifacts"]}
    assert rows["tflite"]["readiness"]["gpu_delegate"]["ready"]
    assert set(rows["onnx_int8"]["readiness"]) == {"nnapi", "coreml_mlprogram", "coreml_neuralnetwork"}
    assert "readiness" not in rows["keras"]  # not shipped to a phone
    assert "## Device readiness" in (exported_run / "report.md").read_text()
    # onnx_dynamic splits into several partitions for every EP: the required check fails it, and only it
    strict = cli("gate", exported_run, "--require-gpu-delegate")
    assert "FAIL onnx_dynamic: no phone accelerator takes it whole" in strict.stdout, strict.stdout + strict.stderr
    assert strict.returncode == 1
    failing = {line.split()[1].rstrip(":") for line in strict.stdout.splitlines()
               if line.startswith("FAIL") and "no phone accelerator" in line}
    expected = {n for n, a in rows.items() if a.get("readiness") and not any(
        v.get("ready") for v in a["readiness"].values())}
    assert failing == expected
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.edgeship.gate]\nrequire_gpu_delegate = true\nmax_drop = 100\nmin_agreement = 0\n")
    assert "FAIL onnx_dynamic" in cli("gate", exported_run, "--config", config).stdout
    assert cli("gate", exported_run, "--max-drop", "100", "--min-agreement", "0").returncode == 0


def test_required_readiness_fails_closed():
    row = dict(name="m", status="ok", format="tflite", accuracy=0.9, accuracy_delta_pp=0.0, agreement=1.0)
    ready = {"gpu_delegate": {"ready": True}}
    thresholds = GateThresholds(require_gpu_delegate=True)
    assert evaluate_gate(ParityReport.from_json({"artifacts": [{**row, "readiness": ready}]}), thresholds)[0].passed
    for entry, reason in ((None, "no device-readiness figures"), ({"error": "boom"}, "could not be checked: boom"),
                          ({"gpu_delegate": {"ready": False, "issues": ["TOPK_V2 on CPU"]}}, "TOPK_V2 on CPU")):
        verdict = evaluate_gate(ParityReport.from_json({"artifacts": [{**row, "readiness": entry}]}), thresholds)[0]
        assert not verdict.passed and reason in verdict.reasons[0]
    assert evaluate_gate(ParityReport.from_json({"artifacts": [{**row, "readiness": None}]}), GateThresholds())[0].passed  # not asked for
    keras_row = {**row, "format": "keras"}  # not shipped: never judged by readiness
    assert evaluate_gate(ParityReport.from_json({"artifacts": [keras_row]}), thresholds)[0].passed
    with pytest.raises(UsageError, match="true or false"):
        GateThresholds(require_gpu_delegate="yes")
    assert resolve_thresholds(None, require_gpu_delegate=None).require_gpu_delegate is False
