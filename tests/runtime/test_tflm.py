"""TensorFlow Lite Micro as a runtime: the int8 artifact runs on a microcontroller's interpreter with the same
answers as LiteRT, its tensor arena is measured (the least that allocates), and an op TFLM lacks is one line that
names it and the fix."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install 'edgeship[mcu]')")


def _test_pixels(run, count=48):
    from edgeship.core.pixels import load_pixels
    from edgeship.core.splits import SplitManifest
    from edgeship.runtime.spec import Bundle

    rows = SplitManifest.read(run / "bundle" / "splits.csv").select("test")[:count]
    return load_pixels([r.path for r in rows], Bundle.load(run / "bundle").info.input)


def test_tflm_answers_as_litert_does_and_its_arena_is_the_least_that_allocates(exported_run):
    from tflite_micro.python.tflite_micro import runtime

    from edgeship.runtime import Classifier

    pixels = _test_pixels(exported_run)
    micro = Classifier.load(exported_run / "bundle", artifact="tflite_int8", backend="tflm")
    litert = Classifier.load(exported_run / "bundle", artifact="tflite_int8")
    ours, theirs = micro.predict_proba(pixels), litert.predict_proba(pixels)
    assert micro.runtime.startswith("tflite-micro")
    assert np.mean(ours.argmax(1) == theirs.argmax(1)) >= 0.97 and np.abs(ours - theirs).max() <= 3 / 256
    data, arena = micro.model_bytes, micro.session.arena_bytes
    assert arena > 0
    runtime.Interpreter.from_bytes(data, arena_size=arena)  # enough
    with pytest.raises(RuntimeError):
        runtime.Interpreter.from_bytes(data, arena_size=arena - 16)  # one alignment step less is not


def test_an_op_tflm_lacks_is_one_line_naming_the_op_and_the_fix(exported_run, cli):
    from edgeship.runtime.errors import ModelLoadError
    from edgeship.runtime.tflm_session import TFLMSession

    with pytest.raises(ModelLoadError, match=r"op DEQUANTIZE \(node \d+\) failed to prepare .*tflite_int8"):
        TFLMSession(exported_run / "bundle" / "model_float16.tflite")
    image = next((exported_run / "data").rglob("*.png"), None) or next(exported_run.parent.rglob("*.png"))
    done = cli("predict", exported_run / "bundle" / "model_float16.tflite", image, "--backend", "tflm")
    assert done.returncode == 2 and "DEQUANTIZE" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bench_runs_tflm_only_when_named(exported_run):
    from edgeship.bench.matrix import artifacts_of, build_cases

    artifacts = artifacts_of(exported_run / "bundle")
    assert not [c for c in build_cases(artifacts, backend="all") if c["backend"] == "tflm"]
    named = build_cases(artifacts, backend="tflm")
    assert {c["name"] for c in named} == {a.name for a in artifacts if a.format == "tflite"}
