"""Every `.tflite` carries the standard TFLite metadata, so MediaPipe Tasks loads it unmodified."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from edgeship.core.splits import SplitManifest
from edgeship.export.formats import FORMATS
from edgeship.export.tflite_standard_metadata import (
    LABELS_FILE,
    STANDARD_KEY,
    read_associated_files,
    read_metadata,
)
from edgeship.runtime import Bundle, Classifier
from edgeship.runtime.preprocess import prepare_batch
from edgeship.runtime.spec import range_normalization as normalization
from edgeship.runtime.tflite_metadata import read_tflite_metadata

TFLITE_FORMATS = [f.name for f in FORMATS.values() if f.filename.endswith(".tflite")]


@pytest.mark.parametrize("value_range", [(0.0, 255.0), (0.0, 1.0), (-1.0, 1.0)])
def test_normalization_maps_pixels_onto_the_model_value_range(value_range):
    mean, std = normalization(value_range)
    assert (0 - mean) / std == pytest.approx(value_range[0])
    assert (255 - mean) / std == pytest.approx(value_range[1])


@pytest.mark.parametrize("run, name", [("exported_run", name) for name in TFLITE_FORMATS]
                         + [("qat_exported_run", "tflite_int8")])
def test_tflite_carries_standard_metadata_and_labels_file(request, run, name):
    folder = request.getfixturevalue(run)
    bundle = Bundle.load(folder / "bundle")
    data = (folder / "bundle" / FORMATS[name].filename).read_bytes()
    metadata = read_metadata(read_tflite_metadata(data)[STANDARD_KEY])
    image, = metadata.subgraphMetadata[0].inputTensorMetadata
    (unit,) = image.processUnits
    assert [list(unit.options.mean), list(unit.options.std)] == [[0.0], [1.0]]  # the model takes 0-255 itself
    assert (image.stats.min[0], image.stats.max[0]) == tuple(bundle.info.input.value_range)
    output, = metadata.subgraphMetadata[0].outputTensorMetadata
    assert output.associatedFiles[0].name.decode() == LABELS_FILE
    packed = read_associated_files(data)[LABELS_FILE].decode("utf-8").splitlines()
    assert tuple(packed) == bundle.info.labels


def test_vendored_schema_is_the_one_mediapipe_ships():
    spec = importlib.util.find_spec("mediapipe")
    if spec is None:
        pytest.skip("mediapipe is not installed (pip install edgeship[dev])")
    shipped = Path(spec.origin).parent / "tasks" / "metadata" / "metadata_schema_py_generated.py"
    vendored = Path(__file__).resolve().parents[2] / "runtime" / "vendor" / "tflite_metadata_schema_py_generated.py"
    assert vendored.read_text() == shipped.read_text()


@pytest.fixture(scope="module")
def held_out_images(exported_run):
    """The demo test split, already at the model's input size, so MediaPipe's own resize is the identity
    and any difference comes from normalization, labels or IO types: what the metadata decides."""
    bundle = Bundle.load(exported_run / "bundle")
    rows = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")
    return prepare_batch([r.path for r in rows], bundle.info.input)


@pytest.mark.slow
@pytest.mark.parametrize("run, name", [("exported_run", name) for name in TFLITE_FORMATS]
                         + [("qat_exported_run", "tflite_int8")])  # converted from quantization-aware ranges
def test_mediapipe_image_classifier_agrees_with_edgeship_runtime(request, held_out_images, run, name):
    mp = pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import BaseOptions, vision

    path = request.getfixturevalue(run) / "bundle" / FORMATS[name].filename
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=1)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        mediapipe_top = [
            classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            .classifications[0].categories[0].category_name
            for image in held_out_images]
    ours = Classifier.load(path)
    edgeship_top = [ours.labels[i] for i in ours.predict_proba(held_out_images).argmax(axis=1)]
    assert len(mediapipe_top) == len(held_out_images) > 0
    assert mediapipe_top == edgeship_top


@pytest.mark.slow
def test_mediapipe_rejects_the_same_images_as_the_runtime(small_digits, tmp_path):
    """A bundle with an unknown threshold: MediaPipe's ImageClassifier, reading only the .tflite metadata,
    rejects exactly the test images edgeship's runtime answers `unknown` to, and names the same class for
    the rest; the report gives the share rejected, computed here again from the runtime's own scores."""
    mp = pytest.importorskip("mediapipe")
    import json

    from edgeship.export import export_run
    from edgeship.runtime import Classifier
    from edgeship.train import TrainConfig, train
    from mediapipe.tasks.python import BaseOptions, vision

    run = tmp_path / "run"
    train(small_digits, run, TrainConfig(backbone="small_cnn", image_size=32, epochs=3, batch_size=16,
                                         unknown_recall=0.8, show_progress=False))
    export_run(run, ["tflite", "tflite_int8"], show_progress=False)
    bundle = Bundle.load(run / "bundle")
    images = prepare_batch([r.path for r in SplitManifest.read(run / "bundle" / "splits.csv").select("test")],
                           bundle.info.input)
    report = json.loads((run / "report.json").read_text())
    for name in ("tflite", "tflite_int8"):
        path = run / "bundle" / FORMATS[name].filename
        ours = [p[0].label for p in Classifier.load(path).predict(list(images))]
        options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=1)
        with vision.ImageClassifier.create_from_options(options) as classifier:
            theirs = []
            for image in images:
                categories = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                          data=np.ascontiguousarray(image))).classifications[0].categories
                theirs.append(categories[0].category_name if categories else "unknown")
        assert theirs == ours, name
        assert "unknown" in ours, "the threshold path was not exercised"
        row = next(a for a in report["artifacts"] if a["name"] == name)
        assert row["unknown_rejection_rate"] == pytest.approx(ours.count("unknown") / len(ours))
    assert "## Unknown images" in (run / "report.md").read_text()
