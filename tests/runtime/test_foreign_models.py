"""Models edgeship did not make: a MediaPipe-written .tflite, plain converter outputs, an NCHW ONNX model.

Their labels and normalization come from their own metadata, else from --labels / --input-range /
--mean --std; nothing is guessed. Each result is checked against another implementation: MediaPipe's
ImageClassifier, the bundle's own artifact, or ONNX Runtime fed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgeship.runtime.preprocess import prepare_batch
from edgeship.runtime.spec import InputSpec

from ..cli.test_cli_habits import _plain_onnx_nchw

MEDIAPIPE_MODEL = Path(__file__).parents[1] / "data" / "mediapipe_digits.tflite"  # see data/make_mediapipe_model.py


@pytest.fixture(scope="module")
def digits10(tmp_path_factory) -> Path:
    from edgeship.train import write_digits_dataset

    return write_digits_dataset(tmp_path_factory.mktemp("digits10") / "data", size=32, per_class=12)


def _predictions(result) -> dict[str, list[dict]]:
    assert result.returncode == 0, result.stderr
    return {Path(row["path"]).name + Path(row["path"]).parent.name: row["predictions"]
            for row in map(json.loads, result.stdout.splitlines())}


def test_model_with_only_mediapipe_metadata_predicts_like_mediapipe(digits10, cli):
    """Written by MediaPipe 0.10.21's own metadata writer: labels file and NormalizationOptions (127.5, 127.5),
    nothing of edgeship's. Class names, scores and the top class match MediaPipe's ImageClassifier."""
    from edgeship.runtime import Classifier

    info = Classifier.load(MEDIAPIPE_MODEL).info
    assert info.labels[:3] == ("zero", "one", "two") and (info.input.mean, info.input.std) == ((127.5,), (127.5,))
    images = sorted(digits10.rglob("*.png"))
    ours = _predictions(cli("predict", MEDIAPIPE_MODEL, digits10, "--json", "--top-k", "3"))
    assert len(ours) == len(images) == 120
    correct = sum(preds[0]["label"] == path.parent.name for path, preds in
                  ((p, ours[p.name + p.parent.name]) for p in images))
    assert correct / len(images) > 0.6  # the normalization is applied: raw 0-255 pixels would not get here

    mp = pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(MEDIAPIPE_MODEL)),
                                            max_results=3)
    pixels = prepare_batch(images, InputSpec(32, 32))
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for path, image in zip(images, pixels):
            theirs = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            categories = theirs.classifications[0].categories
            mine = ours[path.name + path.parent.name]
            assert [c.category_name for c in categories][0] == mine[0]["label"]
            assert [round(c.score, 4) for c in categories] == pytest.approx([p["score"] for p in mine], abs=2e-4)


@pytest.fixture(scope="module")
def plain_tflite(exported_run, tmp_path_factory) -> Path:
    """model.keras through a plain TFLiteConverter: no metadata of any kind; it takes 0-255 pixels."""
    from edgeship.core.tensorflow import load_keras_model
    from edgeship.core.tfenv import captured_output, import_keras

    tf, _ = import_keras()
    with captured_output():
        data = tf.lite.TFLiteConverter.from_keras_model(load_keras_model(exported_run / "bundle" / "model.keras")).convert()
    path = tmp_path_factory.mktemp("plain") / "plain.tflite"
    path.write_bytes(data)
    return path


def test_plain_tflite_needs_flags_and_then_predicts_like_the_bundle(exported_run, plain_tflite, tmp_path, cli):
    from edgeship.core.splits import SplitManifest
    from edgeship.runtime import Bundle

    bundle = Bundle.load(exported_run / "bundle")
    images = [r.path for r in SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")]
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(bundle.info.labels) + "\n")

    no_labels = cli("predict", plain_tflite, images[0])
    assert no_labels.returncode == 2 and "pass --labels FILE" in no_labels.stderr
    no_range = cli("predict", plain_tflite, images[0], "--labels", labels)
    assert no_range.returncode == 2 and "pass --input-range 0,255|0,1|-1,1" in no_range.stderr
    assert [line.startswith("edgeship: error:") for line in no_range.stderr.splitlines()].count(True) == 1

    flagged = _predictions(cli("predict", plain_tflite, *images, "--labels", labels, "--input-range", "0,255",
                               "--json", "--top-k", "2"))
    reference = _predictions(cli("predict", exported_run / "bundle", *images, "--artifact", "tflite", "--json",
                                 "--top-k", "2"))
    assert flagged == reference  # same labels, same scores, image by image

    # gate compares a bundle with such a file once the flags describe it
    data = tmp_path / "data"
    for path in images:
        (data / path.parent.name).mkdir(parents=True, exist_ok=True)
        (data / path.parent.name / path.name).write_bytes(path.read_bytes())
    gate = cli("gate", "--reference", exported_run, "--candidate", plain_tflite, "--data", data, "--labels", labels,
               "--input-range", "0,255")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "agreement 100.00%" in gate.stdout


def test_nchw_onnx_with_flags_or_metadata_props_matches_onnxruntime_fed_by_hand(small_digits, tmp_path, cli):
    import onnx
    import onnxruntime as ort

    model_path = _plain_onnx_nchw(tmp_path / "plain.onnx")  # input (1, 3, 40, 48), 4 outputs
    images = sorted(small_digits.rglob("*.png"))[:6]
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nfox\nowl\n")
    flagged = _predictions(cli("predict", model_path, *images, "--labels", labels, "--input-range", "-1,1",
                               "--json", "--top-k", "4"))

    pixels = prepare_batch(images, InputSpec(40, 48)).astype(np.float32)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    for path, image in zip(images, pixels):
        x = ((image - 127.5) / 127.5).transpose(2, 0, 1)[None]
        probs = session.run(None, {"x": x})[0][0]
        mine = {p["label"]: p["score"] for p in flagged[path.name + path.parent.name]}
        assert mine == pytest.approx(dict(zip(["cat", "dog", "fox", "owl"], probs.tolist())), abs=1e-5)

    model = onnx.load(model_path)  # the same facts as metadata_props: no flags needed
    for key, value in {"labels": json.dumps(["cat", "dog", "fox", "owl"]), "mean": "127.5", "std": "127.5"}.items():
        model.metadata_props.add(key=key, value=value)
    described = tmp_path / "described.onnx"
    onnx.save(model, described)
    assert _predictions(cli("predict", described, *images, "--json", "--top-k", "4")) == flagged


@pytest.mark.parametrize("flags, message", [
    (["--input-range", "0,2"], "choose 0,255, 0,1 or -1,1"),
    (["--mean", "127.5"], "--mean and --std go together"),
    (["--mean", "1,2", "--std", "1,2"], "expected one value or three"),
    (["--labels", "missing.txt"], "--labels missing.txt: no such file"),
])
def test_model_hint_flags_are_checked(flags, message, plain_tflite, small_digits, cli):
    result = cli("predict", plain_tflite, next(small_digits.rglob("*.png")), *flags)
    assert result.returncode == 2 and message in result.stderr


def _uint8_output_onnx(path: Path, metadata: dict | None = None) -> Path:
    """An ONNX model whose two "scores" are the first two pixels of its uint8 input, output as uint8 with no
    QuantizeLinear (no scale anywhere in the graph)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Flatten", ["f"], ["flat"]),
             helper.make_node("Slice", ["flat", "start", "end", "axis"], ["two"]),
             helper.make_node("Cast", ["two"], ["scores"], to=TensorProto.UINT8)]
    constants = [helper.make_tensor(name, TensorProto.INT64, [1], [value])
                 for name, value in (("start", 0), ("end", 2), ("axis", 1))]
    graph = helper.make_graph(nodes, "uint8_scores",
                              [helper.make_tensor_value_info("image", TensorProto.UINT8, ["n", 8, 8, 3])],
                              [helper.make_tensor_value_info("scores", TensorProto.UINT8, ["n", 2])], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_integer_outputs_are_dequantized_or_refused_never_printed_raw(tmp_path, cli):
    from PIL import Image

    image = tmp_path / "px.png"
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[0, 0, :2] = (192, 64)
    Image.fromarray(pixels).save(image)
    labels = tmp_path / "labels.txt"
    labels.write_text("yes\nno\n")
    flags = ("--labels", labels, "--input-range", "0,255", "--json", "--top-k", "2")

    bare = _uint8_output_onnx(tmp_path / "bare.onnx")
    refused = cli("predict", bare, image, *flags)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "not probabilities" in refused.stderr and "--output-scale" in refused.stderr
    assert refused.stdout == ""  # no raw integer ever shown as a score

    scaled = _predictions(cli("predict", bare, image, *flags, "--output-scale", "0.00390625"))
    (scores,) = scaled.values()
    assert [(p["label"], p["score"]) for p in scores] == [("yes", 0.75), ("no", 0.25)]  # 192/256, 64/256

    described = _uint8_output_onnx(tmp_path / "described.onnx", {"output_scale": "0.00390625", "output_zero_point": "0"})
    assert _predictions(cli("predict", described, image, *flags)) == {k.replace("bare", "described"): v
                                                                     for k, v in scaled.items()}
    bad = cli("predict", bare, image, *flags, "--output-scale", "-1")
    assert bad.returncode == 2 and "--output-scale" in bad.stderr


@pytest.mark.slow
def test_tf2onnx_of_a_full_int8_tflite_gives_probabilities(exported_run, tmp_path):
    """`python -m tf2onnx.convert --tflite` of a uint8-output model: the scale of its final QuantizeLinear
    dequantizes the output, so the scores are the TFLite model's own probabilities."""
    import subprocess
    import sys

    from edgeship.core.splits import SplitManifest
    from edgeship.runtime import Classifier
    from edgeship.runtime.foreign import ModelHints

    converted = tmp_path / "converted.onnx"
    done = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite",
                           str(exported_run / "bundle" / "model_int8.tflite"), "--output", str(converted)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    tflite = Classifier.load(exported_run / "bundle", artifact="tflite_int8")
    onnx = Classifier.load(converted, hints=ModelHints(labels=tflite.labels, value_range=(0.0, 255.0)))
    assert onnx.session.output_dtype == np.uint8 and not onnx.session.raw_integer_output
    rows = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")
    pixels = prepare_batch([r.path for r in rows], tflite.info.input)
    theirs, ours = onnx.predict_proba(pixels), tflite.predict_proba(pixels)
    assert np.allclose(ours.sum(axis=1), 1.0, atol=0.05) and ours.max() <= 1.0
    assert np.abs(theirs - ours).max() <= 1 / 256 + 1e-6
