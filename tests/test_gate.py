"""Gate thresholds on hand-made reports, and the CLI's exit codes on a real report."""

import json

import pytest

from edgeship.export.gate import GateThresholds, evaluate_gate
from edgeship.runtime.errors import UsageError


def _report(*rows):
    return {"artifacts": [dict(name=n, status="ok", accuracy_delta_pp=d, agreement=a) for n, d, a in rows]}


def test_thresholds_name_the_failing_artifact_and_reason():
    report = _report(("fp32", 0.0, 1.0), ("int8", -1.5, 0.99), ("fp16", 0.2, 0.9))
    verdicts = {v.artifact: v for v in evaluate_gate(report, GateThresholds(max_drop_pp=1.0, min_agreement=0.95))}
    assert verdicts["fp32"].passed
    assert not verdicts["int8"].passed and "dropped 1.50 pp" in verdicts["int8"].reasons[0]
    assert not verdicts["fp16"].passed and "agreement 0.9000 < 0.95" in verdicts["fp16"].reasons[0]


def test_drop_exactly_at_threshold_passes_and_failed_exports_fail():
    report = _report(("a", -1.0, 0.98))
    report["artifacts"].append({"name": "broken", "status": "failed", "error": "converter crashed"})
    verdicts = evaluate_gate(report, GateThresholds(1.0, 0.98))
    assert [v.passed for v in verdicts] == [True, False]
    assert "converter crashed" in verdicts[1].reasons[0]


def test_bad_thresholds_and_empty_reports_are_usage_errors():
    with pytest.raises(UsageError):
        GateThresholds(min_agreement=1.5)
    with pytest.raises(UsageError, match="no artifacts"):
        evaluate_gate({"artifacts": []}, GateThresholds())


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
    assert cli("gate", report, "--min-agreement", "7").returncode == 2
