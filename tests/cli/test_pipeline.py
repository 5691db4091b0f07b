"""End to end through the command line, as a user runs it: train -> export -> gate -> bench -> predict.
And the full demo, whose figures are the vertical slice's acceptance numbers."""

import json
import shutil

import pytest


@pytest.mark.slow
def test_cli_pipeline_on_a_reduced_dataset(small_digits, tmp_path, cli):
    data = tmp_path / "data"
    shutil.copytree(small_digits, data)
    (data / "two" / "empty.png").write_bytes(b"")
    (data / "three" / "notes.jpg").write_text("a text file named like an image")
    run = tmp_path / "run"
    trained = cli("train", data, "--out", run, "--image-size", "32", "--epochs", "3", "--batch-size", "16")
    assert trained.returncode == 0, trained.stderr
    assert "test accuracy" in trained.stdout and (run / "bundle" / "model.keras").is_file()

    exported = cli("export", run, "--formats", "tflite,tflite_int8,onnx")
    assert exported.returncode == 0, exported.stderr
    report = json.loads((run / "report.json").read_text())
    assert [a["name"] for a in report["artifacts"]] == ["tflite", "tflite_int8", "onnx"]
    assert f"report: {run / 'report.md'}" in exported.stdout
    assert report["dataset"]["n_skipped"] == 2 and "**2 skipped**" in (run / "report.md").read_text()
    assert {s["path"].rsplit("/", 1)[-1] for s in report["dataset"]["skipped"]} == {"empty.png", "notes.jpg"}

    assert cli("gate", run, "--max-drop", "-1").returncode == 1
    assert cli("gate", run, "--max-drop", "100", "--min-agreement", "0").returncode == 0

    benched = cli("bench", run, "--runs", "10", "--warmup", "1")
    assert benched.returncode == 0, benched.stderr
    assert all(a["latency_ms"]["p50"] > 0 for a in json.loads((run / "report.json").read_text())["artifacts"])

    image = next((small_digits / "two").glob("*.png"))
    predicted = cli("predict", run / "bundle" / "model_int8.tflite", image, "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout.splitlines()[0])["predictions"][0]["label"] in report["labels"]


@pytest.mark.slow
def test_training_errors_are_one_line_without_traceback(tmp_path, cli):
    missing = cli("train", tmp_path / "nope", "--out", tmp_path / "run")
    assert missing.returncode == 2 and missing.stderr.strip() == f"edgeship: error: {tmp_path / 'nope'}: no such data directory"
    (tmp_path / "one" / "cats").mkdir(parents=True)
    from PIL import Image

    for i in range(5):
        Image.new("RGB", (8, 8), (i, i, i)).save(tmp_path / "one" / "cats" / f"{i}.png")
    single = cli("train", tmp_path / "one", "--out", tmp_path / "run")
    assert single.returncode == 2 and "at least two" in single.stderr and "Traceback" not in single.stderr
    unknown = cli("train", tmp_path / "one", "--out", tmp_path / "run", "--backbone", "vgg99")
    assert unknown.returncode == 2


@pytest.mark.slow
def test_demo_meets_the_acceptance_figures(tmp_path):
    """Full embedded dataset: Keras >= 95 %, TFLite int8 within 1.0 pp and >= 98 % agreement."""
    from edgeship.cli.demo import run_demo

    assert run_demo(tmp_path / "demo", bench_runs=20) == 0
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["reference"]["n_test"] >= 300 and report["dataset"]["n_images"] == 1797
    assert report["reference"]["accuracy"] >= 0.95
    int8 = next(a for a in report["artifacts"] if a["name"] == "tflite_int8")
    assert int8["accuracy_delta_pp"] >= -0.5 and int8["agreement"] >= 0.99  # issue 3 asks 1.0 pp / 98 %, issue 7 0.5 pp / 99 %
    assert all(a["agreement"] >= 0.99 for a in report["artifacts"])  # runtime top-1 == Keras top-1 on >= 99 %
    assert all(a["status"] == "ok" for a in report["artifacts"])
    assert all(a["latency_ms"]["p50"] > 0 for a in report["artifacts"] if a["name"] != "tflite_int8_c")
    # microcontrollers and NPUs (the `mcu` extra that `make` installs): every int8 .tflite on TFLM with its arena,
    # and Vela's placement and cycles per operator on Ethos-U55-128 and U65-256
    import importlib.util

    if importlib.util.find_spec("tflite_micro") and importlib.util.find_spec("ethosu"):
        int8_tflite = [a for a in report["artifacts"] if a["format"] == "tflite" and a["precision"] == "int8"]
        assert int8_tflite and (tmp_path / "demo" / "bundle" / "model_int8_c" / "model_data.cc").is_file()
        for artifact in int8_tflite:
            (tflm,) = [o for o in artifact["other_runtimes"] if o["backend"] == "tflm"]
            assert tflm["agreement"] >= 0.99 and 0 < tflm["arena_bytes"] < 256_000
            npus = {m["config"]: m for m in artifact["npu"]}
            assert set(npus) == {"ethos-u55-128", "ethos-u65-256"}
            assert all(m["operators"] and all(o["cycles"] is not None for o in m["operators"]) for m in npus.values())
        assert "## Ethos-U NPUs (Vela's estimates)" in (tmp_path / "demo" / "report.md").read_text()
    # The published JSON Schemas describe what the demo really writes.
    from edgeship.core.schema import schema_errors

    for kind, path in (("report", "report.json"), ("bench", "bench.json"), ("bundle", "bundle/edgeship.json")):
        assert schema_errors(kind, json.loads((tmp_path / "demo" / path).read_text())) == [], path
