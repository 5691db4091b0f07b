"""Fail closed everywhere: a gate that passes on rows it never received, on images it silently left out, on a
report it cannot read or on a threshold that switches a check off is worse than no gate."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree

import numpy as np
import pytest

# ---------------------------------------------------------------- the on-target gate counts what it receives

AGENT = """
import base64, json, sys
import numpy as np
sys.stdin.buffer.read()  # the tar of test images
n, classes, scenario = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def emit(obj):
    print(json.dumps(obj), flush=True)
def chunk(start, rows):
    probs = np.full((rows, classes), 1.0 / classes, np.float32)
    if scenario == "nan":
        probs[0, 0] = np.nan
    data = base64.b64encode(probs.tobytes()).decode()
    emit({"start": start, "n": rows, "probs": {"tflite": data}})
emit({"environment": {"machine": "fake"}, "artifacts": {"tflite": {"sha256": "0" * 64, "runtime": "fake"}}})
print("[1, 2, 3]")  # JSON that is not an object: a library's chatter, never the protocol
print("42")
if scenario == "short":
    chunk(0, n - 1)  # one image never answered; the agent still claims all of them
elif scenario == "overflow":
    chunk(0, n + 5)
else:
    chunk(0, n)
emit({"done": n})
"""


def _stream_with(scenario: str, images: list[Path], tmp_path: Path):
    from edgeship.export.target_gate import _stream

    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    command = [sys.executable, str(script), str(len(images)), "3", scenario]
    return _stream(command, SimpleNamespace(label="fake-board"), images, 3, ["tflite"], False)


@pytest.fixture()
def some_images(exported_run):
    from edgeship.core.splits import SplitManifest

    return [r.path for r in SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[:6]]


@pytest.mark.parametrize("scenario, reason", [
    ("short", "probabilities for 5 of 6 test images"),
    ("nan", r"1 test image\(s\) with non-finite probabilities"),
    ("overflow", "malformed probability message"),
])
def test_the_on_target_gate_fails_on_rows_it_never_received(scenario, reason, some_images, tmp_path):
    from edgeship.targets.ssh import RemoteError

    with pytest.raises(RemoteError, match=reason):
        _stream_with(scenario, some_images, tmp_path)


def test_a_complete_stream_passes_and_chatter_is_ignored(some_images, tmp_path):
    environment, shipped, probs = _stream_with("complete", some_images, tmp_path)
    assert environment == {"machine": "fake"} and set(shipped) == {"tflite"}
    assert probs["tflite"].shape == (6, 3) and np.allclose(probs["tflite"], 1 / 3)


# ------------------------------------------------------- gate --reference/--candidate counts unreadable images

@pytest.fixture()
def holdout_with_a_broken_image(exported_run, tmp_path):
    import shutil

    from edgeship.core.splits import SplitManifest

    folder = tmp_path / "holdout"
    rows = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")
    for row in rows:
        (folder / row.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(row.path, folder / row.label / row.path.name)
    broken = folder / rows[0].label / "truncated.png"
    broken.write_bytes(rows[0].path.read_bytes()[:40])
    return folder, len(rows)


def test_compare_gate_counts_and_shows_the_images_it_skipped(exported_run, holdout_with_a_broken_image, cli,
                                                            tmp_path):
    folder, readable = holdout_with_a_broken_image
    junit = tmp_path / "gate.xml"
    result = cli("gate", "--reference", exported_run, "--candidate", exported_run / "bundle" / "model_float32.tflite",
                 "--data", folder, "--junit", junit, "--min-agreement", "0.9")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"skipped 1 unreadable image(s) of {readable + 1}" in result.stderr and "truncated.png" in result.stderr
    verdict = next(line for line in result.stdout.splitlines() if line.startswith("PASS"))
    assert f"(on {readable} images; 1 unreadable image(s) skipped)" in verdict
    properties = {p.get("name"): p.get("value") for p in ElementTree.parse(junit).getroot().iter("property")}
    assert (properties["n_images"], properties["n_skipped"]) == (str(readable), "1")
    shown = next(line for line in result.stdout.splitlines() if line.startswith("reference "))
    assert f"{100 * float(properties['reference_accuracy']):.2f}% on {readable} " in shown  # the JUnit file says it too
    assert properties["reference_n_test"] == str(readable)


def test_compare_streams_the_folder_a_chunk_at_a_time(exported_run, holdout_with_a_broken_image, monkeypatch):
    """Both sides see chunks of at most CHUNK images, never the whole folder decoded at once."""
    from edgeship.core import pixels
    from edgeship.export.compare import compare_models
    from edgeship.runtime.classifier import Classifier

    folder, readable = holdout_with_a_broken_image
    monkeypatch.setattr(pixels, "CHUNK_IMAGES", 4)
    monkeypatch.setattr(pixels.iter_pixel_chunks, "__defaults__", (4, "decode images", True, None))
    seen = []
    original = Classifier.predict_proba

    def spy(self, batch, *args, **kwargs):
        seen.append(len(batch))
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(Classifier, "predict_proba", spy)
    report = compare_models(exported_run / "bundle" / "model_float32.tflite",
                            exported_run / "bundle" / "model_int8.tflite", folder, show_progress=False)
    assert report.reference.n_test == readable and report.reference.n_skipped == 1
    assert max(seen) <= 4 and sum(seen) == 2 * readable


# ---------------------------------------------------------------- reports and thresholds that cannot be used

@pytest.mark.parametrize("damage, where", [
    (lambda r: r["artifacts"][0].pop("name"), "'name' is a required property"),
    (lambda r: r.update(reference=["not", "an", "object"]), "reference"),
    (lambda r: r["artifacts"][0].update(accuracy="high"), "accuracy"),
])
def test_a_report_that_breaks_its_schema_is_one_line_exit_2(run_copy, cli, damage, where):
    path = run_copy / "report.json"
    report = json.loads(path.read_text())
    damage(report)
    path.write_text(json.dumps(report))
    result = cli("gate", run_copy)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "not a valid edgeship report" in result.stderr
    assert where in result.stderr


@pytest.mark.parametrize("setting", ["min_agreement = false", "max_drop = inf", "min_accuracy = true",
                                     "max_prob_diff = nan"])
def test_thresholds_that_would_switch_a_check_off_are_refused(exported_run, tmp_path, cli, setting):
    config = tmp_path / "pyproject.toml"
    config.write_text(f"[tool.edgeship.gate]\n{setting}\n")
    result = cli("gate", exported_run, "--config", config)
    assert result.returncode == 2 and "must be a finite number" in result.stderr, result.stderr


@pytest.mark.parametrize("flags", [("--max-drop", "inf"), ("--max-class-drop=-inf",), ("--max-drop", "nan")])
def test_non_finite_flags_are_refused(exported_run, cli, flags):
    result = cli("gate", exported_run, *flags)
    assert result.returncode == 2 and "expected a number of percentage points" in result.stderr, result.stderr


def test_the_api_refuses_them_too():
    from edgeship.export.gate import GateThresholds
    from edgeship.runtime.errors import UsageError

    for bad in ({"min_agreement": False}, {"max_drop_pp": float("inf")}, {"min_speedup": True}):
        with pytest.raises(UsageError, match="finite number"):
            GateThresholds(**bad)


# ------------------------------------------------------------------- records that describe the bytes on disk

def test_a_swapped_artifact_loses_the_search_record_of_the_old_bytes(run_copy):
    from edgeship.export.exporter import recheck_run, replace_artifact
    from edgeship.runtime import Bundle

    bundle = Bundle.load(run_copy / "bundle")
    record = bundle.artifact("tflite_int8")
    record.layers = [{"name": "conv1", "op": "CONV_2D", "error": 3.8, "metric": "rmse/scale"}]
    record.quantization = {"chosen": "3 node(s) float", "float_layers": ["conv0"], "trials": []}
    bundle.save(run_copy / "bundle")
    replace_artifact(run_copy, "tflite_int8", (run_copy / "bundle" / "model_float32.tflite").read_bytes())
    swapped = Bundle.load(run_copy / "bundle").artifact("tflite_int8")
    assert swapped.replaced_by_hand and swapped.quantization is None and swapped.layers is None
    row = next(r for r in recheck_run(run_copy, show_progress=False).parity.to_json()["artifacts"] if r["name"] == "tflite_int8")
    assert "quantization" not in row and "layers" not in row


def test_bench_reads_the_report_only_once_it_holds_the_run_lock(run_copy, monkeypatch):
    """A target record merged by `gate --target` just before bench got the lock must survive bench's write."""
    from contextlib import contextmanager

    from edgeship.bench import runner
    from edgeship.bench.runner import BenchSettings, run_bench

    original = runner.run_lock

    @contextmanager
    def lock_after_a_gate_merged(root, command):
        path = Path(root) / "report.json"
        report = json.loads(path.read_text())
        report["targets"] = [{"target": "ssh://pi@board", "status": "failed", "error": "merged meanwhile"}]
        path.write_text(json.dumps(report))  # what the on-target gate wrote while bench waited for the lock
        with original(root, command):
            yield

    monkeypatch.setattr(runner, "run_lock", lock_after_a_gate_merged)
    outcome = run_bench([run_copy], BenchSettings(runs=2, warmup=0, backend="tflite", show_progress=False))
    assert not outcome.failed
    report = json.loads((run_copy / "report.json").read_text())
    assert [t["target"] for t in report["targets"]] == ["ssh://pi@board"]
    assert all(a.get("latency_ms") for a in report["artifacts"] if a["format"] == "tflite")
    # the Markdown renders bench's figures from the typed rows: images/s and load ms, not dashes
    latency = (run_copy / "report.md").read_text().split("## Latency (batch 1)")[1].split("\n## ")[0]
    tflite = next(line for line in latency.splitlines() if line.startswith("| tflite |"))
    cells = [c.strip() for c in tflite.strip("|").split("|")]
    row = next(a for a in report["artifacts"] if a["name"] == "tflite")
    assert cells[4] == f"{row['throughput_ips']:.1f}" and cells[5] == f"{row['load_ms']:.1f}", tflite
    assert "threads" in row["latency_settings"] and row["latency_settings"]["source"] == "bench"


def test_bench_run_returns_what_failed(run_copy):
    from edgeship.bench import bench_run
    from edgeship.export.exporter import recheck_run, replace_artifact

    replace_artifact(run_copy, "onnx", b"definitely not an onnx model")
    recheck_run(run_copy, show_progress=False)  # parity marks it failed; the report is written
    result = bench_run(run_copy, runs=2, warmup=0, show_progress=False)
    report, report_md = result  # unpacks as before
    assert report_md == run_copy / "report.md" and report is result.report
    assert not result.ok and any("onnx" in failure for failure in result.failed)


# ------------------------------------------------------------------------- exports on threads of one program

def test_export_never_changes_the_process_wide_temp_dir(run_copy, monkeypatch, tmp_path):
    import tempfile

    from edgeship.export import export_run
    from edgeship.export.formats import ExportFormat

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = []
    original = ExportFormat.convert

    def spy(self, job):
        seen.append((tempfile.tempdir, job.scratch_root))
        return original(self, job)

    monkeypatch.setattr(ExportFormat, "convert", spy)
    export_run(run_copy, ["tflite", "onnx_int8"], show_progress=False)
    assert seen and all(tempdir == str(tmp_path) for tempdir, _ in seen)
    assert all(Path(root) == run_copy.resolve() / ".edgeship-tmp" or Path(root) == run_copy / ".edgeship-tmp"
               for _, root in seen)


def test_a_second_thread_cannot_export_a_run_another_thread_is_writing(run_copy):
    from edgeship.core.errors import RunBusyError
    from edgeship.core.layout import run_lock
    from edgeship.export import export_run

    held, release, errors = threading.Event(), threading.Event(), []

    def holder():
        with run_lock(run_copy, "export"):
            held.set()
            release.wait(60)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(60)
    try:
        export_run(run_copy, ["tflite"], show_progress=False)
    except RunBusyError as exc:
        errors.append(str(exc))
    finally:
        release.set()
        thread.join()
    assert errors and "another edgeship export is running on this run" in errors[0]


def test_two_runs_export_side_by_side_on_threads(exported_run, tmp_path):
    import shutil

    from edgeship.export import export_run

    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        shutil.copytree(exported_run, run)
    results, failures = {}, []

    def export(run):
        try:
            results[run] = export_run(run, ["tflite", "onnx_int8"], show_progress=False)
        except Exception as exc:  # noqa: BLE001 - the test reports whatever broke
            failures.append(f"{run.name}: {exc!r}")

    threads = [threading.Thread(target=export, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    for run in runs:
        assert not results[run].failed and not (run / ".edgeship-tmp").exists()
        assert subprocess.run([sys.executable, "-m", "edgeship", "gate", str(run), "--min-agreement", "0.9"],
                              capture_output=True).returncode == 0


# --------------------------------------------------------------------------- int8 calibrated on every class

def test_calibration_and_diagnosis_images_cover_every_class():
    from edgeship.core.splits import stratified_indices

    labels = np.repeat(np.arange(10), 30)  # a class-sorted manifest: its first 30 images are all class 0
    chosen = stratified_indices(labels, 25)
    assert len(chosen) == 25 and set(labels[chosen]) == set(range(10))
    counts = np.bincount(labels[chosen], minlength=10)
    assert counts.max() - counts.min() <= 1  # as even as the count allows
    assert np.array_equal(chosen, stratified_indices(labels, 25))  # deterministic
    uneven = np.array([0] * 3 + [1] * 50)
    assert list(np.bincount(uneven[stratified_indices(uneven, 10)])) == [3, 7]  # a small class gives what it has


def test_export_calibrates_on_every_class_of_a_large_calib_split(trained_run, monkeypatch):
    from edgeship.core.splits import SplitManifest
    from edgeship.export import exporter
    from edgeship.runtime import Bundle

    bundle = Bundle.load(trained_run / "bundle")
    manifest = SplitManifest.read(trained_run / "bundle" / "splits.csv")
    captured = []
    monkeypatch.setattr(exporter, "load_pixels", lambda paths, *a, **k: captured.extend(paths) or np.zeros((0,)))
    paths, labels = manifest.paths_and_indices("calib", bundle.info.labels)
    size = len(bundle.info.labels)  # fewer than one class holds in the calib split
    assert len(paths) > size and len(set(labels[:size].tolist())) < len(bundle.info.labels)  # the old first-N
    exporter._calibration(manifest, bundle, size, False)
    by_path = dict(zip(map(str, paths), labels.tolist()))
    assert sorted(by_path[str(p)] for p in captured) == list(range(len(bundle.info.labels)))
