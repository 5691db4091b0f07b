"""Export: every registry format converts, carries its metadata, and its parity figures are right."""

import hashlib
import json

import numpy as np
import pytest
from edgeship.core.splits import SplitManifest
from edgeship.export.formats import FORMATS, resolve_formats
from edgeship.runtime import Bundle, Classifier
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import sha256_file
from edgeship.runtime.preprocess import prepare_batch

REPORT_ARTIFACT_KEYS = {"name", "format", "precision", "path", "size_bytes", "accuracy", "accuracy_delta_pp",
                        "agreement", "max_abs_prob_diff", "mean_abs_prob_diff"}


def _report(run):
    return json.loads((run / "report.json").read_text())


def test_every_registry_format_exports_with_sha_and_size(exported_run):
    bundle = Bundle.load(exported_run / "bundle")
    assert [a.name for a in bundle.artifacts] == list(FORMATS)
    for record in bundle.artifacts:
        assert record.status == "ok", record
        path = exported_run / "bundle" / record.file
        if path.is_dir():  # SavedModel: hash over every file, computed here independently
            files = sorted(p for p in path.rglob("*") if p.is_file())
            listing = "".join(f"{p.relative_to(path).as_posix()}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n"
                              for p in files)
            assert record.sha256 == hashlib.sha256(listing.encode()).hexdigest()
            assert record.size_bytes == sum(p.stat().st_size for p in files)
            continue
        data = path.read_bytes()
        assert record.sha256 == hashlib.sha256(data).hexdigest()
        assert record.size_bytes == len(data)


@pytest.mark.parametrize("name", [f.name for f in FORMATS.values() if f.on_device])
def test_lone_artifact_carries_labels_and_input_spec(exported_run, tmp_path, name):
    bundle = Bundle.load(exported_run / "bundle")
    lone = tmp_path / FORMATS[name].filename  # copied away from its bundle: only embedded metadata remains
    lone.write_bytes((exported_run / "bundle" / FORMATS[name].filename).read_bytes())
    classifier = Classifier.load(lone)
    assert classifier.labels == bundle.info.labels
    assert classifier.info.input == bundle.info.input
    assert classifier.artifact == name


def test_report_has_the_documented_keys_and_relative_paths(exported_run):
    report = _report(exported_run)
    assert report["reference"]["n_test"] > 0 and 0 <= report["reference"]["accuracy"] <= 1
    assert (exported_run / report["split_manifest"]).is_file()
    for artifact in report["artifacts"]:
        assert REPORT_ARTIFACT_KEYS <= artifact.keys()
        assert (exported_run / artifact["path"]).exists()
    assert report["environment"]["cores"] >= 1
    markdown = (exported_run / "report.md").read_text()
    assert "| tflite_int8 | tflite | int8 |" in markdown
    assert (exported_run / "report_accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_parity_figures_match_an_independent_loop(exported_run):
    """Recompute each artifact's figures image by image through the public API and compare."""
    from edgeship.core.tensorflow import load_keras_model

    report = _report(exported_run)
    bundle = Bundle.load(exported_run / "bundle")
    manifest = SplitManifest.read(exported_run / "bundle" / "splits.csv")
    test_rows = manifest.select("test")
    labels = np.array([bundle.info.labels.index(r.label) for r in test_rows])
    model = load_keras_model(exported_run / "bundle" / "model.keras")
    keras_probs = np.concatenate([
        model(prepare_batch([r.path], bundle.info.input).astype(np.float32), training=False).numpy()
        for r in test_rows])
    assert report["reference"]["accuracy"] == pytest.approx(np.mean(keras_probs.argmax(1) == labels))
    assert report["reference"]["n_test"] == len(test_rows)
    for artifact in (a for a in report["artifacts"] if FORMATS[a["name"]].on_device):
        classifier = Classifier.load(exported_run / "bundle", artifact=artifact["name"])
        top = [classifier.predict(r.path, top_k=len(bundle.info.labels)) for r in test_rows]
        probs = np.zeros_like(keras_probs)
        for i, predictions in enumerate(top):
            for p in predictions:
                probs[i, p.index] = p.score
        accuracy = np.mean([t[0].index for t in top] == labels)
        assert artifact["accuracy"] == pytest.approx(accuracy)
        assert artifact["accuracy_delta_pp"] == pytest.approx(100 * (accuracy - report["reference"]["accuracy"]))
        assert artifact["agreement"] == pytest.approx(np.mean(probs.argmax(1) == keras_probs.argmax(1)))
        assert artifact["max_abs_prob_diff"] == pytest.approx(np.abs(probs - keras_probs).max(), abs=1e-5)


def test_keras_and_saved_model_rows_match_keras_computed_independently(exported_run):
    """The `.keras` row reloads the file; the SavedModel row is run here through its serving signature."""
    import tensorflow as tf
    from edgeship.core.tensorflow import load_keras_model

    report = {a["name"]: a for a in _report(exported_run)["artifacts"]}
    bundle = Bundle.load(exported_run / "bundle")
    rows = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")
    pixels = prepare_batch([r.path for r in rows], bundle.info.input).astype(np.float32)
    keras_probs = load_keras_model(exported_run / "bundle" / "model.keras").predict(pixels, verbose=0)
    signature = tf.saved_model.load(str(exported_run / "bundle" / "saved_model")).signatures["serving_default"]
    saved_probs = np.concatenate([list(signature(tf.constant(pixels[i:i + 1])).values())[0].numpy()
                                  for i in range(len(pixels))])
    assert report["keras"]["agreement"] == 1.0 and report["keras"]["max_abs_prob_diff"] < 1e-6
    assert report["saved_model"]["agreement"] == pytest.approx(np.mean(saved_probs.argmax(1) == keras_probs.argmax(1)))
    assert report["saved_model"]["max_abs_prob_diff"] == pytest.approx(np.abs(saved_probs - keras_probs).max(), abs=1e-5)
    assets = json.loads((exported_run / "bundle" / "saved_model" / "assets" / "edgeship.json").read_text())
    assert tuple(assets["labels"]) == bundle.info.labels and assets["format"] == "saved_model"


def test_int8_artifact_takes_raw_uint8_pixels(exported_run):
    classifier = Classifier.load(exported_run / "bundle", artifact="tflite_int8")
    assert classifier.session.input_dtype == np.uint8
    quant = classifier.session.quantization
    assert quant["input_scale"] == pytest.approx(1.0, abs=1e-3) and quant["input_zero_point"] == 0


def test_unknown_format_lists_valid_ones():
    with pytest.raises(UsageError, match="valid: keras, saved_model, tflite, tflite_dynamic"):
        resolve_formats(["tflite", "coreml"])
    assert [f.name for f in resolve_formats(["onnx", "onnx"])] == ["onnx"]


def test_one_failing_format_does_not_stop_the_others(run_copy, monkeypatch):
    from dataclasses import replace

    from edgeship.export import exporter
    from edgeship.export.formats import FORMATS

    def broken(job):
        raise RuntimeError("simulated converter crash")

    monkeypatch.setitem(FORMATS, "tflite_fp16", replace(FORMATS["tflite_fp16"], converter=broken))
    result = exporter.export_run(run_copy, ["tflite_fp16", "onnx"], show_progress=False)
    assert result.failed == ["tflite_fp16"]
    rows = {a["name"]: a for a in result.parity.to_json()["artifacts"]}
    assert rows["tflite_fp16"]["status"] == "failed" and "simulated converter crash" in rows["tflite_fp16"]["error"]
    assert rows["onnx"]["status"] == "ok" and rows["onnx"]["agreement"] > 0.9


def test_the_formats_guide_table_matches_the_registry():
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "guides" / "formats.md").read_text()
    section = guide[guide.index("# Export formats"):].split("\n\n")[0]
    lines = [line for line in section.splitlines() if line.startswith("| `")]
    rows = [[cell.strip() for cell in line.split("|")[1:5]] for line in lines]
    assert [(name.strip("`"), file) for name, file, _, _ in rows] == [(f.name, f.filename) for f in FORMATS.values()]
    assert [calib != "no" for _, _, _, calib in rows] == [f.needs_calibration for f in FORMATS.values()]


def test_int8_io_choice_and_calibration_warning(run_copy, caplog):
    from edgeship.export.exporter import export_run

    with caplog.at_level("WARNING", logger="edgeship"):
        result = export_run(run_copy, ["tflite_int8"], calib_size=50, show_progress=False, int8_io="int8")
    calibration = [r.getMessage() for r in caplog.records if "calibrates on" in r.getMessage()]
    assert len(calibration) == 1 and "`edgeship train --calib-fraction" in calibration[0]  # one warning, with the fix
    assert any("MediaPipe" in w for w in result.parity.to_json()["warnings"])
    assert "> **Warning:**" in (run_copy / "report.md").read_text()
    classifier = Classifier.load(run_copy / "bundle", artifact="tflite_int8")
    assert classifier.session.input_dtype == np.int8 and classifier.session.quantization["input_zero_point"] == -128
    row = result.parity.to_json()["artifacts"][0]
    assert row["agreement"] >= 0.9 and Bundle.load(run_copy / "bundle").artifact("tflite_int8").io == "int8"
    assert Bundle.load(run_copy / "bundle").artifact("tflite_int8").versions["tensorflow-cpu"]


def test_corrupt_keras_model_and_empty_calib_split_are_one_line_errors(run_copy, cli):
    splits = run_copy / "bundle" / "splits.csv"
    lines = splits.read_text().splitlines()
    splits.write_text("\n".join(line for line in lines if not line.endswith(",calib")) + "\n")
    edited = cli("export", run_copy, "--formats", "tflite_int8")
    assert edited.returncode == 2 and "splits.csv: changed since training" in edited.stderr
    bundle = Bundle.load(run_copy / "bundle")  # the same manifest, recorded as the one trained with
    bundle.provenance["split"]["sha256"] = sha256_file(splits)
    bundle.save(run_copy / "bundle")
    empty_calib = cli("export", run_copy, "--formats", "tflite_int8")
    assert empty_calib.returncode == 2 and "calib split is empty" in empty_calib.stderr
    (run_copy / "bundle" / "model.keras").write_bytes(b"PK\x03\x04 definitely not a keras archive")
    corrupt = cli("export", run_copy)
    assert corrupt.returncode == 2 and "model.keras: changed since training" in corrupt.stderr
    bundle.provenance["model_sha256"] = sha256_file(run_copy / "bundle" / "model.keras")
    bundle.save(run_copy / "bundle")
    corrupt = cli("export", run_copy)
    assert corrupt.returncode == 2 and "not a loadable Keras model" in corrupt.stderr
    assert "Traceback" not in corrupt.stderr + empty_calib.stderr
    assert cli("export", run_copy, "--formats", "coreml").returncode == 2
