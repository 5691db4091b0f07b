"""The command line as people type it: options anywhere (xargs appends paths last), `-` for paths on stdin,
a run directory wherever a bundle goes, the sub-command's own usage on an error."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from edgeship.cli import FORMAT_NAMES, parse_arguments

from .conftest import REPO

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
    (["gate", "RUN", "--max-drop", "0.5"], "max_drop", 0.5),
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


def test_a_sub_command_error_shows_its_own_usage():
    done = subprocess.run([sys.executable, "-m", "edgeship", "predict", "M", "--top-k", "0"], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 2 and done.stderr.startswith("usage: edgeship predict ")
    assert "argument --top-k: expected a positive integer" in done.stderr


def test_export_help_names_the_default_formats_of_the_registry():
    from edgeship.export.formats import FORMATS

    assert list(FORMAT_NAMES) == list(FORMATS)  # the CLI's copy (it must not import TensorFlow) stays true
    done = subprocess.run([sys.executable, "-m", "edgeship", "export", "--help"], capture_output=True, text=True,
                          cwd=REPO)
    assert "the default:" in done.stdout and "onnx_dynamic" in " ".join(done.stdout.split())


def test_calibration_split_can_be_enlarged(small_digits):
    from edgeship.core.dataset import scan_folder
    from edgeship.core.splits import make_splits

    args = parse_arguments(["train", str(small_digits), "--out", "RUN", "--calib-fraction", "0.4", "--calib-max", "1000"])
    assert (args.calib_fraction, args.calib_max) == (0.4, 1000)
    dataset = scan_folder(small_digits, show_progress=False)
    default = make_splits(dataset).counts()["calib"]
    from edgeship.core.splits import SplitConfig

    larger = make_splits(dataset, SplitConfig(calib=args.calib_fraction, calib_max=args.calib_max)).counts()["calib"]
    assert larger >= 3 * default


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
