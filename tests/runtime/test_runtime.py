"""The runtime on its own: loading, quantized IO, outputs, and malformed model files."""

import numpy as np
import pytest
from edgeship.runtime import Classifier, ModelLoadError
from edgeship.runtime.session import quantize as _quantize
from edgeship.runtime.tflite_metadata import read_tflite_metadata


def test_quantize_uses_scale_and_zero_point():
    pixels = np.array([0, 1, 127, 128, 255], np.uint8)
    np.testing.assert_array_equal(_quantize(pixels, np.dtype(np.int8), 1.0, -128), [-128, -127, -1, 0, 127])
    np.testing.assert_array_equal(_quantize(pixels, np.dtype(np.uint8), 2.0, 10), [10, 10, 74, 74, 138])


def test_predict_accepts_one_image_or_a_list(exported_run):
    from edgeship.core.splits import SplitManifest

    rows = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[:3]
    classifier = Classifier.load(exported_run / "bundle", artifact="tflite")
    single = classifier.predict(rows[0].path, top_k=2)
    batch = classifier.predict([r.path for r in rows], top_k=2)
    assert len(single) == 2 and single[0].score >= single[1].score
    assert [p.label for p in batch[0]] == [p.label for p in single]
    assert len(batch) == 3
    probs = classifier.predict_proba(classifier.prepare([r.path for r in rows]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert [b[0].index for b in batch] == list(probs.argmax(axis=1))


def test_batched_and_looped_inference_agree(exported_run):
    classifier = Classifier.load(exported_run / "bundle", artifact="tflite_int8")
    pixels = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    looped = np.concatenate([classifier.predict_proba(pixels[i : i + 1]) for i in range(5)])
    np.testing.assert_array_equal(classifier.predict_proba(pixels), looped)


def test_unknown_threshold_relabels_low_confidence(exported_run):
    import dataclasses

    classifier = Classifier.load(exported_run / "bundle", artifact="onnx")
    pixels = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    top = classifier.predict(pixels)[0]
    classifier.info = dataclasses.replace(classifier.info, unknown_threshold=min(1.0, top.score + 1e-3))
    assert classifier.predict(pixels)[0].label == "unknown"


def test_wrong_batch_shape_is_a_value_error(exported_run):
    classifier = Classifier.load(exported_run / "bundle", artifact="tflite")
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        classifier.predict_proba(np.zeros((1, 16, 16, 3), np.uint8))


def test_malformed_model_files_raise_model_load_error(exported_run, tmp_path):
    onnx_bytes = (exported_run / "bundle" / "model_float32.onnx").read_bytes()
    tflite_bytes = (exported_run / "bundle" / "model_float32.tflite").read_bytes()
    cases = {
        "empty.tflite": b"",
        "random.tflite": np.random.default_rng(0).bytes(4096),
        "onnx_renamed.tflite": onnx_bytes,
        "truncated.tflite": tflite_bytes[:200],
        "random.onnx": np.random.default_rng(1).bytes(4096),
        "model.pb": b"whatever",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ModelLoadError) as info:
            Classifier.load(path)
        assert name in str(info.value), name


def test_tflite_metadata_reader_finds_embedded_json(exported_run):
    entries = read_tflite_metadata((exported_run / "bundle" / "model_int8.tflite").read_bytes())
    assert b'"labels"' in entries["edgeship"]


def test_bundle_without_runnable_artifacts_explains_what_to_do(trained_run, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(trained_run / "bundle", bundle)
    from edgeship.runtime import Bundle

    manifest = Bundle.load(bundle)
    manifest.artifacts = []
    manifest.save(bundle)
    with pytest.raises(ModelLoadError, match="edgeship export"):
        Classifier.load(bundle)


def test_runtime_package_imports_nothing_heavy():
    """runtime/ must not import TensorFlow or the other edgeship packages (static check)."""
    import ast
    from pathlib import Path

    import edgeship.runtime

    for source in Path(edgeship.runtime.__file__).parent.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                assert not name.startswith(("tensorflow", "keras", "edgeship.train", "edgeship.export",
                                            "edgeship.bench")), f"{source.name} imports {name}"


def test_pixel_table_equals_arithmetic_quantization(exported_run):
    """The uint8 fast path gives exactly what scale/zero-point arithmetic gives, for every pixel value."""
    classifier = Classifier.load(exported_run / "bundle", artifact="tflite_int8")
    session = classifier.session
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    q = session.quantization
    expected = _quantize(pixels.astype(np.float32), session.input_dtype, q["input_scale"], q["input_zero_point"])
    np.testing.assert_array_equal(session.prepare(pixels), expected)
    for scale, zero in ((1.0, -128), (0.5, 3), (1.7, -100)):
        table = _quantize(np.arange(256, dtype=np.uint8), np.dtype(np.int8), scale, zero)
        np.testing.assert_array_equal(table[pixels], _quantize(pixels, np.dtype(np.int8), scale, zero))


@pytest.mark.parametrize("artifact", ["tflite_dynamic", "onnx_dynamic", "onnx_int8", "tflite_int8", "onnx"])
def test_batched_results_equal_one_by_one_for_every_format(exported_run, artifact):
    """Dynamic-range models quantize activations per batch; the Classifier keeps results batch-independent."""
    classifier = Classifier.load(exported_run / "bundle", artifact=artifact)
    pixels = np.random.default_rng(7).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    looped = np.concatenate([classifier.predict_proba(pixels[i : i + 1]) for i in range(6)])
    np.testing.assert_allclose(classifier.predict_proba(pixels), looped, atol=1e-6)
