"""`pip install edgeship[runtime]` pulls no TensorFlow, and `edgeship predict` works in that venv."""

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_runtime_extra_alone_predicts_tflite_and_onnx(exported_run, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{REPO}[runtime]"],
                             capture_output=True, text=True, timeout=600, env=env)
    assert install.returncode == 0, install.stderr[-2000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            env=env, check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"ai-edge-litert", "onnxruntime", "numpy", "pillow"} <= names
    assert not names & {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx"}

    from edgeship.core.splits import SplitManifest

    image = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[0].path
    for model in ("model_int8.tflite", "model_float32.onnx"):
        result = subprocess.run([str(env_dir / "bin" / "edgeship"), "predict", str(exported_run / "bundle" / model),
                                 str(image), "--json"], capture_output=True, text=True, timeout=120, env=env,
                                cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["predictions"][0]["label"] in ("zero", "one", "two", "three")
