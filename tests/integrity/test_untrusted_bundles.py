"""A bundle is data: nothing in it can make edgeship run code that came with it. Only the user can allow that,
per command (`--trust-code`) or per call (`trust_code=True`).

The hostile bundle here is what a pull request could bring: a model.keras whose Lambda layer writes a file
when Keras deserializes it, an edgeship.json that claims `keras_safe_mode: false`, and every sha256 the same
author can recompute, so all integrity checks pass.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

pytestmark = pytest.mark.slow


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def hostile_run(exported_run, tmp_path):
    from edgeship.core.tfenv import import_keras
    from edgeship.runtime import Bundle

    run = tmp_path / "hostile"
    shutil.copytree(exported_run, run)
    marker = tmp_path / "PWNED"
    _, keras = import_keras()
    inputs = keras.Input((32, 32, 3))
    # the path is a constant in the lambda's bytecode, which Keras serializes and runs again on load
    touched = keras.layers.Lambda(eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('x'), x)[1]"))(inputs)
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(touched))
    model_path = run / "bundle" / "model.keras"
    keras.Model(inputs, outputs).save(model_path)
    marker.unlink(missing_ok=True)  # building and saving ran the lambda here: start clean
    bundle = Bundle.load(run / "bundle")
    digest = _sha256(model_path)
    bundle.provenance["model_sha256"] = digest
    bundle.provenance.setdefault("training", {})["keras_safe_mode"] = False  # the bundle asks for unsafe loading
    for record in bundle.artifacts:
        record.model_sha256 = digest
        if record.file == model_path.name:  # the `keras` artifact is the model file itself
            record.sha256, record.size_bytes = digest, model_path.stat().st_size
    bundle.save(run / "bundle")
    return run, marker


def _refused(result, marker) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and any("--trust-code" in line for line in lines), result.stderr
    assert not marker.exists(), "the bundle's code ran"


def test_no_command_runs_a_bundles_code_unless_told_to(hostile_run, tmp_path, cli):
    from edgeship.core.splits import SplitManifest

    run, marker = hostile_run
    holdout = tmp_path / "holdout"
    for row in SplitManifest.read(run / "bundle" / "splits.csv").select("test")[:8]:
        (holdout / row.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(row.path, holdout / row.label / row.path.name)
    image = next(holdout.rglob("*.png"))
    _refused(cli("export", run, "--formats", "tflite"), marker)
    _refused(cli("explain", run, image), marker)
    _refused(cli("bench", run, "--runs", "2", "--warmup", "0"), marker)
    _refused(cli("gate", "--reference", run, "--candidate", run / "bundle" / "model_int8.tflite", "--data", holdout),
             marker)
    _refused(cli("outlier", run, "--out", tmp_path / "copy"), marker)

    trusted = cli("export", run, "--formats", "tflite", "--trust-code")
    assert marker.exists(), trusted.stdout + trusted.stderr  # the flag is the only way in, and it works


def test_the_python_api_refuses_too(hostile_run):
    from edgeship.core.errors import UntrustedCodeError
    from edgeship.core.tensorflow import open_predictor
    from edgeship.export import export_run
    from edgeship.train.gradcam import explain_run

    run, marker = hostile_run
    with pytest.raises(UntrustedCodeError, match="trust_code=True"):
        export_run(run, ["tflite"], show_progress=False)
    with pytest.raises(UntrustedCodeError):
        open_predictor(run / "bundle" / "model.keras")
    with pytest.raises(UntrustedCodeError):
        explain_run(run, [])
    assert not marker.exists()
    open_predictor(run / "bundle" / "model.keras", trust_code=True)
    assert marker.exists()


def test_a_tf_hub_bundle_says_it_needs_the_flag(hostile_run, cli):
    run, marker = hostile_run
    result = cli("export", run, "--formats", "tflite")
    assert "TF-Hub bundle" in result.stderr and "--trust-code" in result.stderr
    record = json.loads((run / "bundle" / "edgeship.json").read_text())["provenance"]["training"]
    assert record["keras_safe_mode"] is False and not marker.exists()
