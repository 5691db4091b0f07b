"""Issue 24 item 7: the `--max-drop` search in bounded memory. At 224 px its two hogs were ONNX Runtime's histogram
calibrators (Entropy, Percentile: every activation of every calibration image held at once) and the per-layer
diagnosis (every activation of 64 images, float and QDQ). Both now stream; the figures they give are the same."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PROBE = Path(__file__).parents[1] / "onnx_memory_probe.py"


def _added_mb(tmp_path, what: str, images: int, chunk="default") -> float:
    done = subprocess.run([sys.executable, str(PROBE), what, str(images), str(tmp_path / f"{what}{chunk}"), str(chunk)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.strip().splitlines()[-1].split("=")[1])


@pytest.mark.slow
def test_the_layer_diagnosis_holds_a_chunk_of_activations_not_all_of_them(tmp_path):
    """64 images at 128 px through 4 convolutions of 32 channels: all at once added 2.2 GB here, in chunks of 8
    0.6 GB. The bound sits between them, well above the streaming figure."""
    assert _added_mb(tmp_path, "sqnr", 64) < 1400  # the default chunk


@pytest.mark.slow
def test_histogram_calibration_runs_in_strides(tmp_path):
    """Entropy calibration on 64 images at 128 px: one pass added 1.4 GB here, strides of 16 images 0.39 GB."""
    assert _added_mb(tmp_path, "calib", 64) < 900  # the default stride


def test_chunked_sqnr_equals_qdq_loss_debug_on_all_images_at_once(tmp_path):
    from edgeship.export import onnx_convert
    from edgeship.export.quant_diagnosis import onnx_activation_sqnr
    from onnxruntime.quantization import qdq_loss_debug

    sys.path.insert(0, str(PROBE.parent))
    from onnx_memory_probe import conv_model

    conv_model(tmp_path / "f.onnx", size=32, width=8, depth=3)
    images = np.random.default_rng(3).integers(0, 256, (13, 32, 32, 3), dtype=np.uint8)
    onnx_convert.quantize_qdq(tmp_path / "f.onnx", tmp_path / "q.onnx", images[:6])
    ours = onnx_activation_sqnr(tmp_path / "f.onnx", tmp_path / "q.onnx", images, tmp_path, chunk=4)  # 4+4+4+1
    float_aug, qdq_aug = tmp_path / "fa.onnx", tmp_path / "qa.onnx"
    qdq_loss_debug.modify_model_output_intermediate_tensors(str(tmp_path / "f.onnx"), str(float_aug))
    qdq_loss_debug.modify_model_output_intermediate_tensors(str(tmp_path / "q.onnx"), str(qdq_aug))
    reader = onnx_convert.ImageReader
    matching = qdq_loss_debug.create_activation_matching(
        qdq_loss_debug.collect_activations(str(qdq_aug), reader(images, "x")),
        qdq_loss_debug.collect_activations(str(float_aug), reader(images, "x")))
    theirs = {name: errors["xmodel_err"] for name, errors in qdq_loss_debug.compute_activation_error(
        {n: m for n, m in matching.items() if m.get("float")}).items()}
    assert set(ours) == set(theirs) and len(ours) >= 4
    for name in theirs:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-3), name


def test_strided_minmax_calibration_gives_the_one_pass_model(tmp_path, monkeypatch):
    """MinMax keeps each tensor's min and max: in strides (13 images: a stride of 13 is all; 12: strides of 6)
    the QDQ model's scales are those of one pass over the images."""
    import onnx
    from edgeship.export import onnx_convert
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    sys.path.insert(0, str(PROBE.parent))
    from onnx_memory_probe import conv_model

    conv_model(tmp_path / "f.onnx", size=32, width=8, depth=3)
    images = np.random.default_rng(4).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    assert [onnx_convert.calibration_stride(n) for n in (12, 13, 300, 126, 1)] == [12, 13, 15, 14, 1]
    assert onnx_convert.calibration_stride(12, most=8) == 6
    strided = tmp_path / "strided.onnx"
    monkeypatch.setattr(onnx_convert, "calibration_stride", lambda count, most=16: 6)  # two strides of 6
    onnx_convert.quantize_qdq(tmp_path / "f.onnx", strided, images)
    one_pass = tmp_path / "one.onnx"
    quantize_static(str(tmp_path / "f.onnx"), str(one_pass), onnx_convert.ImageReader(images, "x"),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)

    def scales(path):
        return {i.name: numpy_helper.to_array(i).tolist() for i in onnx.load(str(path)).graph.initializer
                if i.name.endswith("_scale")}

    ours = scales(strided)
    assert ours and ours == scales(one_pass)
