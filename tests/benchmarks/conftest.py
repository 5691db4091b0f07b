"""MobileNetV2 at 224 px with random weights (speed does not depend on them), exported like a user's model."""

from pathlib import Path

import numpy as np
import pytest
from edgeship.core.tfenv import captured_output
from edgeship.export.exporter import ConversionJob
from edgeship.export.formats import FORMATS
from edgeship.runtime import InputSpec, ModelInfo
from edgeship.train.backbones import build_classifier

BENCH_FORMATS = ("tflite", "tflite_dynamic", "tflite_int8", "onnx", "onnx_int8", "onnx_dynamic")


@pytest.fixture(scope="session")
def mobilenet_artifacts(tmp_path_factory) -> dict[str, Path]:
    """{format name: artifact path} for MobileNetV2 (alpha 1.0, 224 px, 10 classes)."""
    out = tmp_path_factory.mktemp("mobilenet")
    model = build_classifier("mobilenet_v2", 10, image_size=224, weights=None, alpha=1.0)
    info = ModelInfo(labels=tuple(str(i) for i in range(10)), input=InputSpec(224, 224))
    calibration = np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
    job = ConversionJob(model, info, calibration)
    paths = {}
    for name in BENCH_FORMATS:
        fmt = FORMATS[name]
        with captured_output():
            data = fmt.convert(job)
        path = out / fmt.filename
        path.write_bytes(fmt.embed(data, {**info.to_dict(), "format": name}))
        paths[name] = path
    return paths


@pytest.fixture(params=BENCH_FORMATS)
def edgeship_model(request, mobilenet_artifacts):
    """Overrides the edgeship pytest plugin's fixture: our benchmarks run every format."""
    return mobilenet_artifacts[request.param]


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def edgeship_threads(request):
    return request.param


def report_line(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n  {text}")
