"""The command line as people type it: options anywhere (xargs appends paths last), `-` for paths on stdin,
a run directory wherever a bundle goes, the sub-command's own usage on an error."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from edgeship.cli import parse_arguments

from ..conftest import REPO

# (argv, attribute, expected value): each pair of rows is one command typed two ways.
INVOCATIONS = [
    (["predict", "M", "--json", "a.png"], "images", ["a.png"]),
    (["predict", "M", "a.png", "--json"], "images", ["a.png"]),
    (["predict", "M", "a.png", "--top-k", "2", "b.png"], "images", ["a.png", "b.png"]),
    (["predict", "--top-k", "2", "M", "a.png", "b.png"], "top_k", 2),
    (["explain", "RUN", "a.png", "--class", "A", "b.png"], "images", ["a.png", "b.png"]),
    (["explain", "--class", "A", "RUN", "a.png", "b.png"], "class_name", "A"),
    (["bench", "M1", "--runs", "5", "M2"], "models", ["M1", "M2"]),
    (["bench", "--runs", "5", "M1", "M2"], "runs", 5),
    (["gate", "RUN", "--max-drop", "0.5"], "max_drop_pp", 0.5),
    (["sweep", "DATA", "--out", "S", "--max-drop", "0.5%"], "max_drop", 0.5),
    (["sweep", "--max-drop", "0.5pp", "--out", "S", "DATA"], "data", "DATA"),
    (["gate", "--max-drop", "0.5", "RUN"], "report", "RUN"),
    (["export", "RUN", "--formats", "tflite,onnx"], "formats", ["tflite", "onnx"]),
    (["export", "--formats", "tflite,onnx", "RUN"], "run", "RUN"),
    (["train", "DATA", "--out", "RUN", "--epochs", "3"], "epochs", 3),
    (["train", "--out", "RUN", "--epochs", "3", "DATA"], "data", "DATA"),
]


@pytest.mark.parametrize("argv,attribute,expected", INVOCATIONS)
def test_options_may_come_before_or_after_positionals(argv, attribute, expected):
    args = parse_arguments(argv)
    assert getattr(args, attribute) == expected and args.command == argv[0] and callable(args.func)


def _edgeship(*args):
    return subprocess.run([sys.executable, "-m", "edgeship", *args], capture_output=True, text=True, cwd=REPO)


def test_a_sub_command_error_is_one_line_naming_the_command():
    done = _edgeship("predict", "M", "--top-k", "0")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("edgeship predict: error: argument --top-k: expected a positive integer")
    assert "(see `edgeship predict --help`)" in done.stderr


@pytest.mark.parametrize("args, guess", [
    (("train", "data", "--out", "x", "--epcohs", "3"), "did you mean --epochs?"),
    (("export", "run", "--formts", "tflite"), "did you mean --formats?"),
    (("trian", "data"), "did you mean train?"),
    (("gate", "run", "--max-dorp=1"), "did you mean --max-drop?"),
])
def test_a_mistyped_flag_or_command_gets_one_line_with_a_guess(args, guess):
    done = _edgeship(*args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and guess in done.stderr, done.stderr


def test_version():
    import importlib.metadata

    done = _edgeship("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"edgeship {importlib.metadata.version('edgeship')}"


def test_export_help_names_the_default_formats_of_the_registry():
    # the CLI reads the registry itself, and reading it imports no TensorFlow
    probe = "import sys, edgeship.cli; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.split() == ["False", "False"]
    done = subprocess.run([sys.executable, "-m", "edgeship", "export", "--help"], capture_output=True, text=True,
                          cwd=REPO)
    from edgeship.export.formats import DEFAULT_FORMATS

    shown = " ".join(done.stdout.split())
    assert f"the default: {', '.join(DEFAULT_FORMATS)};" in shown and "onnx_int8" in DEFAULT_FORMATS
    assert "onnx_dynamic" not in DEFAULT_FORMATS and "saved_model" not in DEFAULT_FORMATS  # named choices


def test_calibration_split_can_be_enlarged(small_digits):
    from edgeship.core.dataset import scan_folder
    from edgeship.core.splits import make_splits

    args = parse_arguments(["train", str(small_digits), "--out", "RUN", "--calib-fraction", "0.4", "--calib-max", "1000"])
    assert (args.calib, args.calib_max) == (0.4, 1000)
    dataset = scan_folder(small_digits, show_progress=False)
    default = make_splits(dataset).counts()["calib"]
    from edgeship.core.splits import SplitConfig

    larger = make_splits(dataset, SplitConfig(calib=args.calib, calib_max=args.calib_max)).counts()["calib"]
    assert larger >= 3 * default


def test_validation_and_test_splits_can_be_resized(small_digits, cli):
    from edgeship.cli.train import config_from
    from edgeship.core.dataset import scan_folder
    from edgeship.core.splits import make_splits

    args = parse_arguments(["train", str(small_digits), "--out", "RUN", "--val-fraction", "0.3", "--test-fraction",
                            "0.25"])
    splits = config_from(args).data.splits
    assert (splits.val, splits.test) == (0.3, 0.25)
    dataset = scan_folder(small_digits, show_progress=False)
    default, larger = make_splits(dataset).counts(), make_splits(dataset, splits).counts()
    assert larger["val"] >= 2 * default["val"] and larger["test"] > default["test"]
    for bad in (["--val-fraction", "1.5"], ["--test-fraction", "0"], ["--val-fraction", "0.5", "--test-fraction",
                                                                        "0.5"]):
        done = cli("train", small_digits, "--out", "RUN", *bad)
        assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 3, bad


def test_the_no_flip_preset_never_mirrors():
    from edgeship.train.augment import STANDARD, AugmentConfig

    assert AugmentConfig.parse("standard").flip is True
    no_flip = AugmentConfig.parse("standard-no-flip")
    assert not no_flip.flip and not no_flip.vertical_flip and no_flip.rotation == STANDARD.rotation


def test_predict_takes_a_run_directory_xargs_and_stdin(exported_run, cli):
    from edgeship.core.splits import SplitManifest

    images = [str(r.path) for r in SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[:3]]
    direct = cli("predict", exported_run, *images, "--top-k", "1")
    assert direct.returncode == 0, direct.stderr
    assert [line.split(":")[0] for line in direct.stdout.splitlines()] == images
    piped = subprocess.run(f"printf '%s\\n' {' '.join(images)} | xargs {sys.executable} -m edgeship predict "
                           f"{exported_run} --top-k 1", shell=True, capture_output=True, text=True, cwd=REPO)
    stdin = subprocess.run([sys.executable, "-m", "edgeship", "predict", str(exported_run), "-", "--top-k", "1"],
                           input="\n".join(images) + "\n", capture_output=True, text=True, cwd=REPO)
    assert piped.stdout == stdin.stdout == direct.stdout, piped.stderr + stdin.stderr


@pytest.mark.slow
def test_skipped_images_get_one_console_line(small_digits, tmp_path, cli):
    data = tmp_path / "data"
    shutil.copytree(small_digits, data)
    (data / "zero" / "broken.png").write_bytes(b"not a png")
    done = cli("train", data, "--out", tmp_path / "run", "--image-size", "32", "--epochs", "1",
               "--unknown-recall", "0")
    assert done.returncode == 0, done.stderr
    line = next(l for l in done.stderr.splitlines() if l.startswith("skipped"))
    assert line.startswith("skipped 1 unreadable image(s) of 161; the list is in ") and line.endswith("report.md")


def _plain_onnx_nchw(path):
    """A small NCHW conv classifier built with onnx.helper: no edgeship metadata, channels first."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
         helper.make_node("Softmax", ["f"], ["y"])],
        "plain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 40, 48])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_bench_times_third_party_models_without_metadata(exported_run, tmp_path, cli):
    """A plain TFLiteConverter file and a channels-first ONNX model: no labels, no edgeship metadata."""
    import json

    from edgeship.core.tensorflow import load_keras_model
    from edgeship.core.tfenv import captured_output, import_keras

    tf, _ = import_keras()
    with captured_output():
        data = tf.lite.TFLiteConverter.from_keras_model(load_keras_model(exported_run / "bundle" / "model.keras")).convert()
    plain_tflite = tmp_path / "plain.tflite"
    plain_tflite.write_bytes(data)
    plain_onnx = _plain_onnx_nchw(tmp_path / "plain.onnx")
    from edgeship.core.splits import SplitManifest

    image = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[0].path
    refused = cli("predict", plain_tflite, image)
    assert refused.returncode == 2 and "no edgeship metadata" in refused.stderr  # predict still needs labels
    done = cli("bench", plain_tflite, plain_onnx, "--runs", "5", "--warmup", "1", "--backend", "all",
               "--json", tmp_path / "b.json")
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    timed = {r["name"]: r for r in rows if r["status"] == "ok"}
    assert timed["plain.tflite"]["input_shape"] == [1, 32, 32, 3] and timed["plain.tflite"]["latency_ms"]["p50"] > 0
    assert timed["plain.onnx"]["input_shape"] == [1, 3, 40, 48] and timed["plain.onnx"]["latency_ms"]["p50"] > 0
    assert done.returncode == 0, done.stderr


def test_a_reader_that_stops_reading_gets_no_traceback():
    """`edgeship formats | head -1`: the pipe closes under us; one exit code like any Unix tool's, no traceback."""
    process = subprocess.Popen([sys.executable, "-m", "edgeship", "formats"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=REPO)
    process.stdout.close()  # the reader is gone before edgeship writes a line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141 and "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


def test_a_run_copied_away_from_its_images_says_so_in_one_line(exported_run, tmp_path, cli):
    """The split manifest's paths are relative to the bundle: a run copied one folder deeper than it was trained
    finds none of its images, and the error says that rather than one image's "no such file"."""
    from edgeship.core.errors import DatasetError
    from edgeship.core.splits import SplitManifest, SplitRow

    copy = tmp_path / "deeper" / exported_run.name
    shutil.copytree(exported_run, copy)
    done = cli("gate", copy, "--remeasure")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert "was the run moved or copied away from its images?" in line and "test image(s)" in line
    manifest = SplitManifest.read(copy / "bundle" / "splits.csv")
    labels = tuple(dict.fromkeys(row.label for row in manifest.rows))
    assert not manifest.select("val")[0].path.exists()
    with pytest.raises(DatasetError, match="no such file, nor the next 2 val"):
        manifest.paths_and_indices("val", labels)
    # one image missing among present ones is that image's own error later, not this one
    present = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[0]
    one_gone = SplitManifest([SplitRow(tmp_path / "gone.png", present.label, "test"), present])
    assert one_gone.paths_and_indices("test", labels)[0] == [tmp_path / "gone.png", present.path]
