"""Files and strings from elsewhere that are malformed on purpose: too deep, too big, out of range, or full of
markup. Each is one line and exit 2 (or text shown as text), never a traceback, a hang or gigabytes of memory."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from ..cli_checks import one_line_exit_2

pytestmark = pytest.mark.slow


DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize("where", ["report", "manifest", "baseline"])
def test_json_nested_thousands_deep_isone_line_exit_2(run_copy, cli, tmp_path, where):
    if where == "report":
        (run_copy / "report.json").write_text('{"a": ' + DEEP + "}")
        one_line_exit_2(cli("gate", run_copy), "nested more than")
    elif where == "manifest":
        (run_copy / "bundle" / "edgeship.json").write_text(DEEP)
        one_line_exit_2(cli("predict", run_copy, _png(tmp_path)), "nested more than")
    else:
        baseline = tmp_path / "bench.json"
        baseline.write_text('{"rows": ' + DEEP + "}")
        one_line_exit_2(cli("bench", run_copy / "bundle" / "model_int8.tflite", "--runs", "2", "--compare", baseline),
                         "nested more than")


def test_a_keras_config_nested_too_deep_or_unpacking_to_gigabytes_is_refused(tmp_path):
    from edgeship.core.tensorflow import archive_holds_code
    from edgeship.runtime.errors import ModelLoadError

    deep = tmp_path / "deep.keras"
    with zipfile.ZipFile(deep, "w") as archive:
        archive.writestr("config.json", DEEP)
    with pytest.raises(ModelLoadError, match="nested more than"):
        archive_holds_code(deep)
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("config.json", "w", force_zip64=True) as member:
            block = b" " * (1 << 24)
            for _ in range(128):  # 2 GiB of spaces: about 2 MB on disk
                member.write(block)
    assert bomb.stat().st_size < 20 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelLoadError, match="unpack to"):
        archive_holds_code(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: nothing was unpacked


@pytest.mark.parametrize("old, new, words", [
    (b'"resize": "bilinear"', b'"resize": "bilinea_"', "unknown resize method"),
    (b'"value_range": [0.0, 255.0]', b'"value_range": [0.0, 0.0e0]', "value_range"),
    (b'"height": 32', b'"height": -0', "height"),
    (b'"channels": 3', b'"channels": 7', "channels"),
])
def test_a_lone_tflites_embedded_spec_is_validated(exported_run, tmp_path, cli, old, new, words):
    """The spec inside a .tflite edited in place (same length, so the FlatBuffer stays valid)."""
    data = (exported_run / "bundle" / "model_float32.tflite").read_bytes()
    assert data.count(old) == 1
    path = tmp_path / "model.tflite"
    path.write_bytes(data.replace(old, new))
    one_line_exit_2(cli("predict", path, _png(tmp_path)), words)


def test_a_baseline_with_a_zero_p50_is_refused_before_benching(exported_run, tmp_path, cli):
    model = exported_run / "bundle" / "model_int8.tflite"
    base = tmp_path / "base.json"
    assert cli("bench", model, "--runs", "3", "--warmup", "1", "--json", base).returncode == 0
    data = json.loads(base.read_text())
    for row in data["rows"]:
        row["latency_ms"]["p50"] = 0
    base.write_text(json.dumps(data))
    one_line_exit_2(cli("bench", model, "--runs", "3", "--compare", base), "p50 0")


def test_a_compare_that_matches_no_row_is_exit_2_not_a_pass(exported_run, tmp_path, cli):
    model = exported_run / "bundle" / "model_int8.tflite"
    base = tmp_path / "base.json"
    assert cli("bench", model, "--runs", "3", "--warmup", "1", "--threads", "2", "--json", base).returncode == 0
    other = cli("bench", model, "--runs", "3", "--warmup", "1", "--threads", "1", "--compare", base)
    one_line_exit_2(other, "no row of this run matches")
    same = cli("bench", model, "--runs", "3", "--warmup", "1", "--threads", "2", "--compare", base,
               "--max-slowdown", "100000%")
    assert same.returncode == 0, same.stderr  # the same settings compare, and pass


def test_an_object_array_of_reference_probabilities_is_one_line(run_copy):
    from edgeship.export.target_gate import _reference_probs
    from edgeship.runtime.errors import UsageError

    np.save(run_copy / "reference_probs.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UsageError, match="not the probabilities export saved"):
        _reference_probs(run_copy, "reference_probs.npy", 1, 4)
    with pytest.raises(Exception, match="not a plain name"):
        _reference_probs(run_copy, "../../etc/passwd", 1, 4)


def test_a_16_bit_8000_px_png_is_decoded_in_bounded_memory(exported_run, tmp_path):
    from PIL import Image

    big = tmp_path / "big16.png"
    ramp = (np.arange(8000, dtype=np.uint32)[None, :] * 8 % 65536).astype(np.uint16)
    Image.fromarray(np.repeat(ramp, 8000, axis=0)).save(big)
    code = ("import resource, subprocess, sys; d = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(d.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "edgeship", "predict", str(exported_run),
                           str(big), "--artifact", "tflite_int8"], capture_output=True, text=True, timeout=300)
    status, peak_kib = map(int, done.stdout.split())
    assert status == 0, done.stderr
    # measured 0.66 GB (a float64 copy of the image made it 1.64 GB)
    assert peak_kib < 1.2 * 1024 * 1024, f"predict peaked at {peak_kib / 1024:.0f} MB"


HOSTILE_LABEL = '<img src=x onerror=alert(1)>\x1b[31m\x1b]0;owned\x07\n# Gate PASSED'


def test_outside_strings_are_text_in_markdown_terminal_and_junit(run_copy, tmp_path, cli):
    """A class name with HTML, ANSI/OSC escapes and a fake heading, and a board's error with the same."""
    from edgeship.core.records import ParityReport
    from edgeship.core.report_markdown import render_markdown

    report = json.loads((run_copy / "report.json").read_text())
    row = report["artifacts"][0]
    row.setdefault("per_class", [])
    row["per_class"] = [{"class": HOSTILE_LABEL, "delta_pp": -5.0, "accuracy": 0.5, "reference_accuracy": 0.55,
                         "n": 10}] + row["per_class"]
    report["warnings"] = [HOSTILE_LABEL]
    report["targets"] = [{"target": "ssh://pi", "status": "failed", "error": HOSTILE_LABEL, "artifacts": []}]
    text = render_markdown(ParityReport.from_json(report), None)
    assert "<img" not in text and "\x1b" not in text and "\x07" not in text
    assert "\n# Gate PASSED" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text

    from edgeship.core.records import GateVerdict
    from edgeship.export.gate import write_junit

    junit = write_junit([GateVerdict("tflite", False, [f"class {HOSTILE_LABEL} dropped"])], tmp_path / "j.xml")
    case = ElementTree.parse(junit).getroot().find(".//failure")  # parses: no control characters left
    assert "\x1b" not in case.get("message") and "onerror" in case.text

    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join([HOSTILE_LABEL.replace("\n", " ")] * 4) + "\n")
    shown = cli("predict", run_copy / "bundle" / "model_float32.onnx", _png(tmp_path), "--labels", labels)
    assert "\x1b" not in shown.stdout + shown.stderr and "\x07" not in shown.stdout + shown.stderr


def _png(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "digit.png"
    if not path.exists():
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    return path


def test_every_resize_name_the_contract_allows_has_a_resizer():
    from edgeship.runtime.preprocess import RESIZERS
    from edgeship.runtime.spec import RESIZE_METHODS

    assert tuple(RESIZERS) == RESIZE_METHODS
