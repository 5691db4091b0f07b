"""`edgeship predict`: same top-1 as Keras, no TensorFlow in the process, clear failures."""

import json
import subprocess
import sys

import numpy as np
import pytest
from edgeship.core.splits import SplitManifest
from edgeship.runtime.preprocess import prepare_image
from edgeship.runtime.spec import Bundle

PROBE = """
import sys
from edgeship.cli import main
code = main(sys.argv[1:])
print("TENSORFLOW_LOADED=" + str(any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)))
print("KERAS_LOADED=" + str("keras" in sys.modules))
sys.exit(code)
"""


def _predict_in_subprocess(*args):
    return subprocess.run([sys.executable, "-c", PROBE, "predict", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def keras_top1(exported_run):
    """Keras' own top-1 label for the first few test images."""
    from edgeship.core.tensorflow import load_keras_model

    bundle = Bundle.load(exported_run / "bundle")
    rows = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[:4]
    model = load_keras_model(exported_run / "bundle" / "model.keras")
    pixels = np.stack([prepare_image(r.path, bundle.info.input) for r in rows]).astype(np.float32)
    return {str(r.path): bundle.info.labels[i] for r, i in zip(rows, model.predict(pixels, verbose=0).argmax(1))}


@pytest.mark.parametrize("artifact", ["model_float32.tflite", "model_int8.tflite", "model_float32.onnx"])
def test_predict_matches_keras_without_importing_tensorflow(exported_run, keras_top1, artifact):
    result = _predict_in_subprocess(exported_run / "bundle" / artifact, *keras_top1, "--json", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {line["path"]: line["predictions"][0]["label"] for line in lines} == keras_top1
    assert all(len(line["predictions"]) == 2 for line in lines)
    assert "TENSORFLOW_LOADED=False" in result.stdout and "KERAS_LOADED=False" in result.stdout


def test_predict_on_bundle_dir_prints_label_and_score(exported_run, keras_top1, cli):
    path, label = next(iter(keras_top1.items()))
    result = cli("predict", exported_run / "bundle", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: {label} (")
    assert "images/s" in result.stderr


def test_bad_images_are_listed_and_exit_1(exported_run, keras_top1, tmp_path, cli):
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    result = cli("predict", exported_run / "bundle" / "model_int8.tflite", bad, next(iter(keras_top1)))
    assert result.returncode == 1
    assert "1 image(s)" in result.stderr and "broken.jpg" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_model_is_one_line_exit_2(tmp_path, cli):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\x00" * 64)
    result = cli("predict", model, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "model.tflite" in result.stderr


def test_predict_video_classifies_every_nth_frame(exported_run, keras_top1, tmp_path, cli):
    cv2 = pytest.importorskip("cv2")
    from edgeship.runtime import Classifier

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    for path in list(keras_top1) * 2:  # 8 frames: the four test digits twice
        writer.write(cv2.imread(path))
    writer.release()
    capture, frames = cv2.VideoCapture(str(video)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    assert len(frames) == 8
    model = exported_run / "bundle" / "model_float32.onnx"
    expected = [p[0].label for p in Classifier.load(model).predict(frames[::2])]

    result = cli("predict", model, "--video", video, "--every", "2", "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["frame"] for line in lines] == [0, 2, 4, 6]
    assert [line["predictions"][0]["label"] for line in lines] == expected
    assert cli("predict", model, "--video", tmp_path / "missing.avi").returncode == 2
    assert cli("predict", model).returncode == 2  # neither images nor --video


def test_predict_expands_folders_and_globs(exported_run, small_digits, cli):
    folder = small_digits / "one"
    expected = sorted(str(p) for p in folder.glob("*.png")) + sorted(str(p) for p in (small_digits / "two").glob("*.png"))
    result = cli("predict", exported_run / "bundle" / "model_float32.tflite", folder, str(small_digits / "two" / "*.png"),
                 "--json", "--threads", "1", "--backend", "tflite")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == expected
    assert f"{len(expected)} image(s)" in result.stderr
    assert cli("predict", exported_run / "bundle" / "model_float32.tflite", str(small_digits / "*.nope")).returncode == 2
    assert cli("predict", exported_run / "bundle" / "model_float32.tflite", folder, "--backend", "coreml").returncode == 2


def test_predict_prints_no_litert_start_up_line(exported_run, keras_top1, cli):
    """LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." was the first line of every predict."""
    result = cli("predict", exported_run / "bundle" / "model_int8.tflite", *keras_top1)
    assert result.returncode == 0, result.stderr
    assert "XNNPACK" not in result.stderr and "INFO:" not in result.stderr
    assert result.stderr.splitlines()[0].startswith(f"{len(keras_top1)} image(s)"), result.stderr


def test_the_silenced_stderr_still_passes_real_errors_on(capfd):
    import os

    from edgeship.runtime.quiet import quiet_native_stderr

    with quiet_native_stderr():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nERROR: a real problem\n")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert err == "ERROR: a real problem\nafter\n"
