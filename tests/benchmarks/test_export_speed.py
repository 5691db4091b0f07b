"""How long exporting every registry format of MobileNetV2 at 224 px takes (goal <= 90 s on 2 cores)."""

import time

import numpy as np
from edgeship.core.tfenv import captured_output
from edgeship.export.exporter import ConversionJob
from edgeship.export.formats import FORMATS
from edgeship.runtime import InputSpec, ModelInfo
from edgeship.train.backbones import build_classifier

from .conftest import report_line


def test_export_every_format_of_mobilenet_v2(benchmark, capsys, tmp_path):
    model = build_classifier("mobilenet_v2", 10, image_size=224, weights=None, alpha=1.0)
    model.save(tmp_path / "model.keras")
    info = ModelInfo(labels=tuple(str(i) for i in range(10)), input=InputSpec(224, 224))
    calibration = np.random.default_rng(0).integers(0, 256, (300, 224, 224, 3), dtype=np.uint8)  # --calib-size default
    job = ConversionJob(model, info, calibration, keras_path=tmp_path / "model.keras")
    seconds = {}

    def export_all():
        for fmt in FORMATS.values():
            started = time.perf_counter()
            with captured_output():
                data = fmt.convert(job)
            fmt.embed(data, {**info.to_dict(), "format": fmt.name, "precision": fmt.precision})
            seconds[fmt.name] = time.perf_counter() - started

    benchmark.group = "export"
    try:
        benchmark.pedantic(export_all, rounds=1, iterations=1)
    finally:
        job.cleanup()
    benchmark.extra_info.update(seconds_per_format=seconds, total_seconds=sum(seconds.values()))
    report_line(capsys, "export MobileNetV2 224 px, 300 calibration images: " + ", ".join(
        f"{k} {v:.1f} s" for k, v in seconds.items()) + f"; total {sum(seconds.values()):.1f} s")
