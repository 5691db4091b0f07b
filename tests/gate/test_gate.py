"""Gate thresholds on hand-made reports, and the CLI's exit codes on a real report."""

import json

import pytest
from edgeship.core.records import ParityReport
from edgeship.export.gate import GateThresholds, evaluate_gate
from edgeship.runtime.errors import UsageError


def _report(*rows):
    return {"artifacts": [dict(name=n, status="ok", accuracy=0.9 + d / 100, accuracy_delta_pp=d, agreement=a)
                          for n, d, a in rows]}


def test_thresholds_name_the_failing_artifact_and_reason():
    report = _report(("fp32", 0.0, 1.0), ("int8", -1.5, 0.99), ("fp16", 0.2, 0.9))
    verdicts = {v.artifact: v for v in evaluate_gate(ParityReport.from_json(report), GateThresholds(max_drop_pp=1.0, min_agreement=0.95))}
    assert verdicts["fp32"].passed
    assert not verdicts["int8"].passed and "dropped 1.50 pp" in verdicts["int8"].reasons[0]
    assert not verdicts["fp16"].passed and "agreement 0.9000 < 0.95" in verdicts["fp16"].reasons[0]


def test_drop_exactly_at_threshold_passes_and_failed_exports_fail():
    report = _report(("a", -1.0, 0.98))
    report["artifacts"].append({"name": "broken", "status": "failed", "error": "converter crashed"})
    verdicts = evaluate_gate(ParityReport.from_json(report), GateThresholds(1.0, 0.98))
    assert [v.passed for v in verdicts] == [True, False]
    assert "converter crashed" in verdicts[1].reasons[0]


def test_bad_thresholds_and_empty_reports_are_usage_errors():
    with pytest.raises(UsageError):
        GateThresholds(min_agreement=1.5)
    with pytest.raises(UsageError, match="no artifacts"):
        evaluate_gate(ParityReport.from_json({"artifacts": []}), GateThresholds())


def test_gate_cli_exit_codes(exported_run, tmp_path, cli):
    report = exported_run / "report.json"
    impossible = cli("gate", report, "--max-drop", "-1")
    assert impossible.returncode == 1, impossible.stderr
    assert "FAIL tflite_int8" in impossible.stdout and "gate FAILED" in impossible.stdout
    loose = cli("gate", exported_run, "--max-drop", "100", "--min-agreement", "0")
    assert loose.returncode == 0, loose.stdout + loose.stderr
    assert loose.stdout.count("PASS ") == len(json.loads(report.read_text())["artifacts"])
    missing = cli("gate", tmp_path / "nope.json")
    assert missing.returncode == 2 and missing.stderr.startswith("edgeship: error:") and "Traceback" not in missing.stderr
    garbage = tmp_path / "report.json"
    garbage.write_text("{not json")
    assert cli("gate", garbage).returncode == 2
    assert cli("gate", report, "--min-agreement", "700").returncode == 2  # 7 would read as 7 %: 700 % is no share


def test_artifact_expecting_unit_range_fails_with_a_diagnosis(run_copy, cli):
    """A float TFLite exported from a model that wants [0, 1] pixels while the runtime feeds 0-255."""
    from edgeship.core.tensorflow import load_keras_model
    from edgeship.core.tfenv import captured_output, import_keras
    from edgeship.export.embed import embed_tflite
    from edgeship.export.exporter import recheck_run, replace_artifact
    from edgeship.runtime import Bundle

    tf, keras = import_keras()
    model = load_keras_model(run_copy / "bundle" / "model.keras")
    inputs = keras.Input(model.input_shape[1:])
    wants_unit_range = keras.Model(inputs, model(keras.layers.Rescaling(255.0)(inputs)))
    with captured_output():
        data = tf.lite.TFLiteConverter.from_keras_model(wants_unit_range).convert()
    bundle = Bundle.load(run_copy / "bundle")
    replace_artifact(run_copy, "tflite", embed_tflite(data, {**bundle.info.to_dict(), "format": "tflite",
                                                             "precision": "float32"}))

    report = recheck_run(run_copy, show_progress=False).parity.to_json()
    broken = next(a for a in report["artifacts"] if a["name"] == "tflite")
    assert broken["agreement"] < 0.6
    assert any("[0, 1]" in finding for finding in broken["diagnosis"])
    healthy = next(a for a in report["artifacts"] if a["name"] == "tflite_int8")
    assert "diagnosis" not in healthy

    junit = run_copy / "gate.xml"
    result = cli("gate", run_copy, "--junit", junit, "--max-drop", "20", "--min-agreement", "0.7")
    assert result.returncode == 1
    assert "FAIL tflite:" in result.stdout and "inputs scaled to [0, 1]" in result.stdout
    assert "PASS tflite_int8" in result.stdout
    import xml.etree.ElementTree as ET

    suite = ET.parse(junit).getroot().find("testsuite")
    failed = [case.get("name") for case in suite.findall("testcase") if case.find("failure") is not None]
    assert failed == ["tflite"] and suite.get("tests") == str(len(report["artifacts"]))
    assert "## Parity statistics" in (run_copy / "report.md").read_text()


def test_gate_reads_thresholds_from_pyproject_and_flags_win(exported_run, tmp_path, cli):
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.edgeship.gate]\nmax_drop = -1\nmin_agreement = 0.5\n")
    from_config = cli("gate", exported_run, "--config", config)
    assert from_config.returncode == 1 and "allowed -1 pp" in from_config.stdout
    flag_wins = cli("gate", exported_run, "--config", config, "--max-drop", "100", "--min-agreement", "0")
    assert flag_wins.returncode == 0, flag_wins.stdout
    config.write_text("[tool.edgeship.gate]\nmax_dorp = 1\n")
    typo = cli("gate", exported_run, "--config", config)
    assert typo.returncode == 2 and "max_dorp" in typo.stderr


def test_per_class_and_probability_thresholds():
    report = {"artifacts": [{"name": "a", "status": "ok", "accuracy": 0.9, "accuracy_delta_pp": 0.0, "agreement": 1.0,
                             "max_abs_prob_diff": 0.3,
                             "per_class": [{"class": "cat", "delta_pp": -4.0}, {"class": "dog", "delta_pp": 4.0}]}]}
    loose = evaluate_gate(ParityReport.from_json(report), GateThresholds(1.0, 0.9))
    strict = evaluate_gate(ParityReport.from_json(report), GateThresholds(1.0, 0.9, max_class_drop_pp=2.0, max_prob_diff=0.1))
    assert loose[0].passed and not strict[0].passed
    assert "cat 4.0 pp" in strict[0].reasons[0] and "max |Δp| 0.3000 > 0.1" in strict[0].reasons[1]


def test_gate_compares_any_two_models_on_a_folder(exported_run, small_digits, tmp_path, cli):
    bundle = exported_run / "bundle"
    ok = cli("gate", "--reference", bundle / "model.keras", "--candidate", bundle / "model_int8.tflite",
             "--data", small_digits, "--max-drop", "5", "--min-agreement", "0.9")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "on 160 images" in ok.stdout and "PASS model_int8.tflite" in ok.stdout
    strict = cli("gate", "--reference", bundle / "model_float32.tflite", "--candidate", bundle / "model_float32.onnx",
                 "--data", small_digits, "--max-drop", "-1")
    assert strict.returncode == 1 and "FAIL model_float32.onnx" in strict.stdout
    lone_keras = tmp_path / "model.keras"
    lone_keras.write_bytes((bundle / "model.keras").read_bytes())
    both_keras = cli("gate", "--reference", lone_keras, "--candidate", lone_keras, "--data", small_digits)
    assert both_keras.returncode == 2 and "needs an edgeship.json" in both_keras.stderr
    half = cli("gate", "--reference", bundle / "model_int8.tflite", "--data", small_digits)
    assert half.returncode == 2 and "go together" in half.stderr


def test_compare_models_figures_match_the_export_report_on_the_same_images(exported_run, tmp_path):
    """Two ways to the same numbers: export's parity on the test split, compare_models on a folder of it."""
    import json
    import shutil

    from edgeship.core.splits import SplitManifest
    from edgeship.export.compare import compare_models

    folder = tmp_path / "test_split"
    for row in SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test"):
        (folder / row.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(row.path, folder / row.label / row.path.name)
    report = json.loads((exported_run / "report.json").read_text())
    expected = next(a for a in report["artifacts"] if a["name"] == "tflite_int8")
    got = compare_models(exported_run / "bundle" / "model.keras", exported_run / "bundle" / "model_int8.tflite",
                         folder, show_progress=False)
    assert got.reference.accuracy == pytest.approx(report["reference"]["accuracy"])
    for key in ("accuracy", "agreement", "accuracy_delta_pp", "mcnemar_p"):
        assert getattr(got.artifacts[0], key) == pytest.approx(expected[key], abs=1e-6), key
