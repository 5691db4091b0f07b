"""Nothing lost, nothing stale: the gate and every consumer describe the files on disk, or refuse.

One test per numbered item of the integrity issue; the kill, concurrency and full-disk tests are in
test_faults.py.
"""

from __future__ import annotations

from edgeship.core.records import ParityReport

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from edgeship.core.errors import DatasetError
from edgeship.export.gate import GateThresholds, evaluate_gate
from edgeship.runtime.errors import IntegrityError, UsageError
from edgeship.runtime.spec import Bundle

QUICK_TRAIN = ("--image-size", "32", "--epochs", "1", "--batch-size", "32", "--unknown-recall", "0")


def _one_line_error(result, code=2, *words):
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgeship: error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_train_refuses_a_folder_of_user_files_and_overwrite_keeps_them(small_digits, run_copy, tmp_path, cli):
    mine = tmp_path / "mine"
    (mine / "training" / "scripts").mkdir(parents=True)
    (mine / "training" / "train_my_model.py").write_text("print('mine')\n")
    (mine / "bundle").mkdir()
    (mine / "bundle" / "README").write_text("my notes\n")
    before = sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*"))
    for extra in ((), ("--overwrite",)):
        refused = cli("train", small_digits, "--out", mine, *QUICK_TRAIN, *extra)
        _one_line_error(refused, 2, "not an edgeship run")
        assert sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*")) == before

    # An edgeship run with the user's files added later: --overwrite replaces edgeship's files only.
    (run_copy / "training" / "train_my_model.py").write_text("print('mine')\n")
    (run_copy / "training" / "scripts").mkdir()
    (run_copy / "training" / "scripts" / "run.sh").write_text("#!/bin/sh\n")
    (run_copy / "bundle" / "README").write_text("my notes\n")
    old_model = (run_copy / "bundle" / "model.keras").read_bytes()
    done = cli("train", small_digits, "--out", run_copy, *QUICK_TRAIN, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert (run_copy / "training" / "train_my_model.py").read_text() == "print('mine')\n"
    assert (run_copy / "training" / "scripts" / "run.sh").is_file()
    assert (run_copy / "bundle" / "README").read_text() == "my notes\n"
    assert "kept 3 file(s) edgeship did not write" in done.stderr
    assert (run_copy / "bundle" / "model.keras").read_bytes() != old_model
    # 4: the old report and the old artifacts went with the old model; the gate has nothing to pass on
    assert not (run_copy / "report.json").exists() and not (run_copy / "bundle" / "model_int8.tflite").exists()
    _one_line_error(cli("gate", run_copy), 2, "no such report")


def test_explain_never_overwrites_one_overlay_with_another(exported_run, tmp_path):
    from edgeship.core.splits import SplitManifest
    from edgeship.core.tensorflow import load_keras_model
    from edgeship.train.gradcam import explain

    bundle = Bundle.load(exported_run / "bundle")
    rows = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[:2]
    images = []
    for folder, row in zip("ab", rows):
        (tmp_path / folder).mkdir()
        images.append(shutil.copy(row.path, tmp_path / folder / "img.png"))
    model = load_keras_model(exported_run / "bundle" / "model.keras")
    written = [path for _, path in explain(model, bundle.info, images, tmp_path / "out")]
    assert len(set(written)) == 2 and all(p.is_file() for p in written)
    assert written[0].read_bytes() != written[1].read_bytes()


def test_artifacts_are_readable_by_other_users(exported_run, tmp_path):
    from edgeship.runtime.fileio import atomic_write_bytes

    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("model_int8.tflite", "model_float32.onnx", "edgeship.json", "model.keras"):
        assert stat.S_IMODE((exported_run / "bundle" / name).stat().st_mode) == 0o666 & ~mask, name
    assert stat.S_IMODE((exported_run / "bundle" / "saved_model").stat().st_mode) == 0o777 & ~mask
    old = os.umask(0o002)
    try:
        written = atomic_write_bytes(tmp_path / "x.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.stat().st_mode) == 0o664


def test_a_swapped_artifact_is_refused_by_predict_gate_and_bench(run_copy, cli):
    image = next((run_copy / "bundle").parent.rglob("*.png"), None) or _a_test_image(run_copy)
    assert cli("gate", run_copy, "--max-drop", "100", "--min-agreement", "0").returncode == 0
    bundle_dir = run_copy / "bundle"
    shutil.copy(bundle_dir / "model_float32.tflite", bundle_dir / "model_int8.tflite")  # another file, same name
    _one_line_error(cli("predict", bundle_dir, image, "--artifact", "tflite_int8"), 2, "does not match the bundle record")
    _one_line_error(cli("gate", run_copy, "--max-drop", "100", "--min-agreement", "0"), 2, "stale")
    _one_line_error(cli("bench", run_copy, "--runs", "2", "--warmup", "0"), 2, "model_int8.tflite")


def _a_test_image(run: Path) -> Path:
    from edgeship.core.splits import SplitManifest

    return SplitManifest.read(run / "bundle" / "splits.csv").select("test")[0].path


def test_reversed_labels_in_the_bundle_record_are_refused(run_copy, cli):
    manifest = run_copy / "bundle" / "edgeship.json"
    data = json.loads(manifest.read_text())
    data["labels"] = data["labels"][::-1]
    manifest.write_text(json.dumps(data))
    _one_line_error(cli("predict", run_copy / "bundle", _a_test_image(run_copy)), 2, "embedded labels")
    _one_line_error(cli("gate", run_copy, "--max-drop", "100"), 2, "labels or input spec")


def test_an_artifact_from_an_older_model_is_stale(run_copy):
    bundle = Bundle.load(run_copy / "bundle")
    record = bundle.artifact("tflite")
    assert bundle.verify_artifact(run_copy / "bundle", record) == record.sha256
    bundle.provenance["model_sha256"] = "0" * 64  # model.keras retrained since this artifact was converted
    with pytest.raises(IntegrityError, match="converted from an older model.keras"):
        bundle.verify_artifact(run_copy / "bundle", record)


def test_report_binds_every_figure_to_the_sha256_of_its_files(exported_run):
    import hashlib

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    report = json.loads((exported_run / "report.json").read_text())
    assert report["model_sha256"] == digest(exported_run / "bundle" / "model.keras")
    assert report["split_sha256"] == digest(exported_run / "bundle" / "splits.csv")
    for row in report["artifacts"]:
        path = exported_run / row["path"]
        if path.is_file():
            assert row["sha256"] == digest(path), row["name"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "0.99"])
def test_non_finite_or_missing_figures_fail_closed(bad):
    row = {"name": "int8", "status": "ok", "accuracy": 0.9, "accuracy_delta_pp": 0.0, "agreement": bad}
    if bad is None:
        del row["agreement"]
    verdict = evaluate_gate(ParityReport.from_json({"artifacts": [row]}), GateThresholds(max_drop_pp=100, min_agreement=0))[0]
    assert not verdict.passed and "agreement missing or not a finite number" in verdict.reasons[0]


def test_nan_in_a_real_report_fails_the_gate(run_copy, cli):
    report = run_copy / "report.json"
    data = json.loads(report.read_text())
    data["artifacts"][0]["agreement"] = float("nan")
    report.write_text(json.dumps(data))  # writes NaN, as Python's json does
    result = cli("gate", run_copy, "--max-drop", "100", "--min-agreement", "0")
    assert result.returncode == 1 and f"FAIL {data['artifacts'][0]['name']}: agreement missing" in result.stdout


def test_an_explicit_config_that_cannot_be_read_is_exit_2(exported_run, tmp_path, cli):
    _one_line_error(cli("gate", exported_run, "--config", tmp_path / "nope.toml"), 2, "nope.toml", "no such file")
    _one_line_error(cli("gate", exported_run, "--config", tmp_path), 2, "is a directory")


def test_accuracy_floor_and_chance_level_fail(run_copy, tmp_path, cli):
    report = json.loads((run_copy / "report.json").read_text())
    lowest = min(row["accuracy"] for row in report["artifacts"])
    report["artifacts"][-1]["accuracy"] = lowest = min(lowest, 0.95)  # the floor below must bite on real rows
    (run_copy / "report.json").write_text(json.dumps(report))
    floor = cli("gate", run_copy, "--max-drop", "100", "--min-agreement", "0", "--min-accuracy", f"{lowest + 1e-4}")
    assert floor.returncode == 1 and f"below the floor {lowest + 1e-4:.2%}" in floor.stdout, floor.stdout
    config = tmp_path / "pyproject.toml"
    config.write_text(f"[tool.edgeship.gate]\nmin_accuracy = {lowest + 1e-4}\nmax_drop = 100\nmin_agreement = 0\n")
    assert cli("gate", run_copy, "--config", config).returncode == 1
    assert cli("gate", run_copy, "--config", config, "--min-accuracy", "0.1").returncode == 0
    # A model that answers one class for every image: accuracy equals the majority share, agreement 100 %.
    majority = report["reference"]["majority_accuracy"]
    useless = {"reference": {"accuracy": majority, "majority_accuracy": majority},
               "artifacts": [{"name": "int8", "status": "ok", "accuracy": majority, "accuracy_delta_pp": 0.0,
                              "agreement": 1.0}]}
    verdict = evaluate_gate(ParityReport.from_json(useless), GateThresholds())[0]
    assert not verdict.passed and "no better than always answering the most common class" in verdict.reasons[0]


def test_train_warns_when_validation_stays_at_chance(tmp_path):
    from edgeship.train.training_warnings import chance_warning

    log = tmp_path / "history.csv"
    log.write_text("epoch,accuracy,val_accuracy\n0,0.2,0.125\n1,0.5,0.125\n2,0.74,0.13\n")
    assert "stays near chance" in chance_warning(log, 8, 0.125)
    log.write_text("epoch,accuracy,val_accuracy\n0,0.5,0.4\n1,0.8,0.75\n")
    assert chance_warning(log, 8, 0.125) is None


def test_from_scratch_backbones_get_batchnorm_that_converges(tmp_path):
    from edgeship.core.tfenv import import_keras
    from edgeship.runtime.spec import InputSpec, ModelInfo
    from edgeship.train.backbones import build_classifier, leaf_layers
    from edgeship.train import TrainConfig
    from edgeship.train.model_setup import SCRATCH_BN_MOMENTUM, build_model

    _, keras = import_keras()
    info = ModelInfo(("a", "b", "c"), InputSpec(32, 32))
    stock = build_classifier("mobilenet_v3_small", 3, 32, None)
    stock_momenta = {layer.momentum for layer in leaf_layers(stock) if isinstance(layer, keras.layers.BatchNormalization)}
    assert max(stock_momenta) > SCRATCH_BN_MOMENTUM  # Keras' MobileNetV3 default
    scratch = build_model(keras, TrainConfig(backbone="mobilenet_v3_small", weights="none"), info, 32)
    momenta = {layer.momentum for layer in leaf_layers(scratch) if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {SCRATCH_BN_MOMENTUM}


def _classes(root: Path, *names, per_class=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in names:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_duplicate_and_control_character_class_names_are_refused(tmp_path, cli):
    from edgeship.core.dataset import scan_folder

    data = _classes(tmp_path / "data", "circle", "square")
    with pytest.raises(DatasetError, match="more than once"):
        scan_folder(data, ["circle", "circle", "square"], show_progress=False)
    duplicated = cli("train", data, "--out", tmp_path / "run", "--classes", "circle,circle,square")
    assert duplicated.returncode == 2 and "argument --classes: lists circle more than once" in duplicated.stderr
    assert not (tmp_path / "run").exists()
    _classes(tmp_path / "data", "a\nb")
    with pytest.raises(DatasetError, match="control character"):
        scan_folder(data, show_progress=False)


def test_classes_txt_that_leaves_out_a_folder_says_which(tmp_path, caplog):
    from edgeship.core.dataset import scan_folder

    data = _classes(tmp_path / "data", "a", "b", "c")
    (data / "classes.txt").write_text("a\nb\n")
    with caplog.at_level("WARNING", logger="edgeship"):
        dataset = scan_folder(data, show_progress=False)
    assert dataset.classes == ("a", "b") and dataset.summary()["excluded_folders"] == ["c"]
    assert "leaves out class folder(s) c" in caplog.text


def test_an_image_in_train_and_test_lists_is_refused(tmp_path):
    from edgeship.train.listfiles import scan_list_dataset

    root = tmp_path / "food"
    _classes(root / "images", "apple", "pie", per_class=6)
    (root / "meta").mkdir()
    (root / "meta" / "classes.txt").write_text("apple\npie\n")
    (root / "meta" / "train.txt").write_text("".join(f"{c}/{i}\n" for c in ("apple", "pie") for i in range(4)))
    (root / "meta" / "test.txt").write_text("apple/4\napple/0\npie/4\npie/5\n")
    with pytest.raises(DatasetError, match=r"test.txt:2 'apple/0' \(also meta/train.txt:1"):
        scan_list_dataset(root, show_progress=False)


def test_undecodable_file_names_are_skipped_and_counted(tmp_path):
    from edgeship.core.dataset import scan_folder
    from edgeship.core.splits import make_splits

    data = _classes(tmp_path / "data", "a", "b", per_class=5)
    bad = os.path.join(os.fsencode(data / "a"), b"\xff\xfe.png")
    shutil.copy(data / "a" / "0.png", bad)
    dataset = scan_folder(data, show_progress=False)
    assert len(dataset.samples) == 10 and len(dataset.skipped) == 1
    assert "\\xff\\xfe.png" in dataset.skipped[0].path and "not valid UTF-8" in dataset.skipped[0].reason
    text = json.dumps(dataset.summary(), ensure_ascii=False)  # the report can be written, and reads back
    assert json.loads(text.encode("utf-8")) == json.loads(json.dumps(dataset.summary()))
    manifest = make_splits(dataset).to_csv_bytes(tmp_path).decode("utf-8").splitlines()  # so can the manifest:
    assert len(manifest) == 1 + 10 and "\\xff" not in "".join(manifest)  # the ten readable images, not the bad name


@pytest.mark.parametrize("flag,value", [("--learning-rate", "-1"), ("--learning-rate", "0"), ("--dropout", "1.5"),
                                        ("--dropout", "-1"), ("--l2", "-1"), ("--hidden", "-5"), ("--seed", "-1"),
                                        ("--alpha", "0"), ("--unknown-recall", "2"), ("--epochs", "0")])
def test_numeric_train_flags_are_checked_at_parse_time(flag, value, tmp_path):
    import contextlib
    import io

    from edgeship.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path), "--out", str(tmp_path / "run"), flag, value])
    assert exit_info.value.code == 2 and f"argument {flag}: expected" in stderr.getvalue()
    assert not (tmp_path / "run").exists()


def test_the_library_validates_the_same_numbers():
    from edgeship.train import TrainConfig
    from edgeship.train.backbones import HeadConfig

    with pytest.raises(UsageError, match="--dropout must be a rate"):
        TrainConfig(head=HeadConfig(dropout=1.5)).validate()
    with pytest.raises(UsageError, match="--learning-rate must be a number > 0"):
        TrainConfig(learning_rate=0).validate()


def test_an_image_size_that_cannot_fit_is_refused_with_the_figure(small_digits, tmp_path, cli):
    result = cli("train", small_digits, "--out", tmp_path / "run", "--image-size", "1024", "--epochs", "1",
                 env={"EDGESHIP_MEMORY_LIMIT": "4G"})
    line = _one_line_error(result, 2, "1024 px", "GiB", "--image-size")
    assert "needs about" in line and not (tmp_path / "run").exists()  # refused before training: nothing left


def test_the_memory_estimate_grows_with_the_image_area():
    from edgeship.train.backbones import build_classifier
    from edgeship.train.memory import estimate_training_bytes

    small = estimate_training_bytes(build_classifier("small_cnn", 4, 64), 32, True, 0)
    large = estimate_training_bytes(build_classifier("small_cnn", 4, 256), 32, True, 0)
    assert 12 < large / small < 17  # activations dominate; they scale with the pixel count (16x)


def test_predict_on_a_folder_without_images_is_exit_2(exported_run, tmp_path, cli):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    _one_line_error(cli("predict", exported_run / "bundle", tmp_path / "empty"), 2, "no images")


def test_an_input_size_that_differs_from_the_artifact_is_one_line(run_copy, tmp_path, cli):
    manifest = run_copy / "bundle" / "edgeship.json"
    data = json.loads(manifest.read_text())
    data["input"]["height"] = data["input"]["width"] = 64
    manifest.write_text(json.dumps(data))
    _one_line_error(cli("predict", "--artifact", "tflite", run_copy / "bundle", _a_test_image(run_copy)), 2,
                    "embedded input")
    broken = tmp_path / "report.json"
    broken.write_text(json.dumps({"artifacts": {"name": "x"}}))
    _one_line_error(cli("gate", broken), 2, "malformed report")


def test_export_cleans_what_a_killed_export_left_and_uses_no_system_temp(run_copy, tmp_path, cli):
    leftovers = [run_copy / ".edgeship-tmp" / "edgeship-export-x" / "saved_model" / "big.bin",
                 run_copy / "bundle" / ".model_int8.tflite.abc123.tmp"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 1024)
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    result = cli("export", run_copy, "--formats", "tflite,onnx_int8", env={"TMPDIR": str(system_tmp)})
    assert result.returncode == 0, result.stderr
    assert not any(p.exists() for p in leftovers) and not (run_copy / ".edgeship-tmp").exists()
    assert not [p for p in system_tmp.iterdir() if "edgeship" in p.name or p.name.startswith("tmp")]


def test_bench_elsewhere_leaves_the_run_report_alone(run_copy, tmp_path, cli):
    before = (run_copy / "report.json").read_bytes()
    elsewhere = cli("bench", run_copy, "--runs", "3", "--warmup", "1", "--backend", "tflite", "--out", tmp_path / "b")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert (run_copy / "report.json").read_bytes() == before and (tmp_path / "b" / "bench.json").is_file()
    into_run = cli("bench", run_copy, "--runs", "4", "--warmup", "1", "--backend", "tflite")
    assert into_run.returncode == 0, into_run.stderr
    report = json.loads((run_copy / "report.json").read_text())
    timed = [a for a in report["artifacts"] if a.get("format") == "tflite"]  # the rows this bench measured
    assert timed and all(a["latency_settings"]["runs"] == 4 and a["latency_settings"]["warmup"] == 1
                         and a["latency_settings"]["target"] == "local" and a["latency_settings"]["sha256"] == a["sha256"]
                         for a in timed)
    others = [a for a in report["artifacts"] if a.get("format") == "onnx"]  # export's own quick timing stays
    assert others and all(a["latency_settings"]["source"] == "export" for a in others)
    assert "bench" not in report
    assert "4 after 1 warm-up" in (run_copy / "report.md").read_text()


def test_the_run_lock_is_reentrant_here_and_refuses_another_process(tmp_path):
    import subprocess
    import sys

    from edgeship.core.layout import run_lock

    probe = f"from edgeship.core.layout import run_lock\nwith run_lock({str(tmp_path)!r}, 'bench'): pass"
    with run_lock(tmp_path, "export"):
        with run_lock(tmp_path, "bench"):  # the demo's export then bench, in one process
            pass
        held = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert held.returncode == 1 and f"another edgeship export is running on this run (pid {os.getpid()})" in held.stderr
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0  # released
