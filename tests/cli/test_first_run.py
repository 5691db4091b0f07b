"""A newcomer's first hour: answers people can use, one voice across commands, a gate that says what it passed,
options that would do nothing refused before any work, and a quiet console."""

from __future__ import annotations

import json
import shutil
from xml.etree import ElementTree

import numpy as np
import pytest

# ------------------------------------------------------------------------ a gate that shows what it passed


def test_the_gate_prints_and_records_the_reference_accuracy(exported_run, cli, tmp_path):
    junit = tmp_path / "gate.xml"
    result = cli("gate", exported_run, "--min-accuracy", "0.5", "--junit", junit, "--min-agreement", "0.9")
    report = json.loads((exported_run / "report.json").read_text())
    accuracy = report["reference"]["accuracy"]
    first, second = result.stdout.splitlines()[:2]
    assert first.startswith(f"reference keras accuracy {accuracy:.2%} on {report['reference']['n_test']} test images")
    assert second == "thresholds: accuracy may drop 1 pp, top-1 agreement >= 90.00%, accuracy >= 50.00%"
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert float(properties["reference_accuracy"]) == pytest.approx(accuracy)
    assert suite.find("system-out").text == first


def test_export_records_which_classes_the_model_never_predicts(exported_run):
    from edgeship.core.splits import SplitManifest
    from edgeship.runtime import Bundle

    report = json.loads((exported_run / "report.json").read_text())
    bundle = Bundle.load(exported_run / "bundle")
    _, labels = SplitManifest.read(exported_run / "bundle" / "splits.csv").paths_and_indices("test", bundle.info.labels)
    top = np.load(exported_run / report["reference"]["probs_file"]).argmax(axis=1)
    expected = [name for i, name in enumerate(bundle.info.labels) if i in labels and i not in top]
    assert report["reference"]["never_predicted"] == expected
    assert report["reference"]["n_classes_in_test"] == len(set(labels.tolist()))


def test_a_model_whose_predictions_collapsed_fails_the_gate_unless_waived(run_copy, cli):
    path = run_copy / "report.json"
    report = json.loads(path.read_text())
    labels = report["labels"]
    report["reference"].update(never_predicted=labels[1:], n_classes_in_test=len(labels))  # answers one class only
    path.write_text(json.dumps(report))
    failed = cli("gate", run_copy, "--min-agreement", "0.5")
    assert failed.returncode == 1
    line = next(line for line in failed.stdout.splitlines() if line.startswith("FAIL keras (reference)"))
    assert f"predicts only 1 of the {len(labels)} classes on the test split" in line and "--allow-collapsed" in line
    waived = cli("gate", run_copy, "--min-agreement", "0.5", "--allow-collapsed")
    assert waived.returncode == 0, waived.stdout


def test_collapse_is_more_than_a_third_of_the_classes_never_predicted():
    from edgeship.core.metrics import never_predicted, predictions_collapsed

    names = ["a", "b", "c", "d", "e", "f"]
    labels = np.repeat(np.arange(6), 5)
    two = np.where(labels < 3, 0, 1)  # the model: two of six classes ever predicted
    assert never_predicted(two, labels, names) == ["c", "d", "e", "f"] and predictions_collapsed(["c", "d", "e", "f"], 6)
    assert not predictions_collapsed(["f"], 6) and not predictions_collapsed(["e", "f"], 6)
    assert predictions_collapsed(["b"], 2)  # a binary model that answers one class


# ------------------------------------------------------------- options that would do nothing, refused up front

@pytest.mark.parametrize("flags, message", [
    (("--backbone", "efficientnet_b0", "--alpha", "0.35"), "--alpha does nothing for efficientnet_b0"),
    (("--weights", "imagenet"), "small_cnn has no pretrained weights"),
    (("--backbone", "mobilenet_v2", "--weights", "none", "--fine-tune-epochs", "3"), "--fine-tune-epochs 3 would train nothing"),
])
def test_options_that_would_do_nothing_are_refused_before_any_work(flags, message, tmp_path, cli):
    result = cli("train", tmp_path / "no-such-data", "--out", tmp_path / "run", *flags)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "no such data directory" not in result.stderr  # refused before the data is even looked at
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------- answers people can use

def test_an_unknown_answer_keeps_its_best_guess(exported_run):
    from edgeship.core.splits import SplitManifest
    from edgeship.cli.predict import _emit
    from edgeship.runtime import Classifier
    from edgeship.runtime.spec import ModelInfo

    loaded = Classifier.load(exported_run / "bundle", artifact="tflite")
    strict = Classifier(loaded.session, ModelInfo(loaded.info.labels, loaded.info.input, unknown_threshold=1.01),
                        loaded.path, loaded.artifact)
    image = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[0].path
    answer, runner_up = strict.predict(image, top_k=2)
    best = loaded.predict(image, top_k=1)[0]
    assert (answer.label, answer.index) == ("unknown", -1) and answer.best_guess == best
    assert answer.to_dict()["best_guess"] == {"label": best.label, "index": best.index, "score": round(best.score, 6)}

    class Out:
        text = ""

        def write(self, s):
            self.text += s

    out = Out()
    _emit("path", "x.png", [answer, runner_up], False, out)
    assert out.text.startswith(f"x.png: unknown (best guess {best.label} {best.score:.3f}), {runner_up.label} (")
    _emit("path", "x.png", [answer], True, out)
    assert json.loads(out.text.splitlines()[-1])["predictions"][0]["best_guess"]["label"] == best.label


def test_ctrl_c_says_what_to_do_next(monkeypatch, capsys):
    import importlib

    from edgeship import cli as cli_module

    def interrupted(args):
        raise KeyboardInterrupt

    for command, advice in (("train", "run the same command again to resume"),
                            ("export", "the export did not finish")):
        monkeypatch.setattr(importlib.import_module(f"edgeship.cli.{command}"), "run", interrupted)
        argv = [command, "data", "--out", "run"] if command == "train" else [command, "run"]
        assert cli_module.main(argv) == 130
        assert advice in capsys.readouterr().err


def test_a_resumed_run_says_how_far_it_got(tmp_path):
    from edgeship.core.layout import RunLayout
    from edgeship.train import TrainConfig
    from edgeship.train.resume import RunState, progress_so_far

    layout = RunLayout(tmp_path)
    layout.training.mkdir(parents=True)
    (layout.training / "history.csv").write_text("epoch,accuracy\n" + "".join(f"{i},0.5\n" for i in range(16)))
    config = TrainConfig(epochs=20)
    assert progress_so_far(layout, config, RunState("running")) == \
        "16 of 20 epoch(s) of phase1; it continues from epoch 17"
    assert progress_so_far(layout, config, RunState("running", ("phase1",))) == "phase1 complete"
    assert progress_so_far(RunLayout(tmp_path / "new"), config, RunState("running")) == "nothing yet"


def test_predict_after_an_interrupted_export_says_the_export_did_not_finish(run_copy, cli):
    from edgeship.runtime import Bundle

    bundle = Bundle.load(run_copy / "bundle")
    bundle.artifacts = [r for r in bundle.artifacts if r.backend in ("keras", "tensorflow")]  # as before the last step
    bundle.save(run_copy / "bundle")
    result = cli("predict", run_copy, "photo.png")  # the model is opened before any image is read
    assert result.returncode == 2 and "the last export did not finish" in result.stderr
    assert "model_dynamic.onnx" in result.stderr and "run `edgeship export` again" in result.stderr


# ---------------------------------------------------------------------------------- one voice across commands

def test_explain_takes_folders_like_predict_and_names_what_a_tflite_lacks(exported_run, tmp_path, cli):
    from edgeship.core.splits import SplitManifest

    folder = tmp_path / "some"
    folder.mkdir()
    for row in SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[:2]:
        shutil.copy(row.path, folder / f"{row.label}_{row.path.name}")
    done = cli("explain", exported_run, folder, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 2
    lite = cli("explain", exported_run / "bundle" / "model_int8.tflite", folder)
    assert lite.returncode == 2 and "Grad-CAM needs the Keras model" in lite.stderr


def test_a_missing_run_reads_the_same_in_every_command(tmp_path, cli):
    missing = tmp_path / "nope"
    for command in (("gate", missing), ("export", missing), ("bench", missing)):
        result = cli(*command)
        assert result.returncode == 2 and f"{missing}: no such run directory" in result.stderr, (command, result.stderr)


def test_bench_takes_a_list_of_backends(exported_run, cli, tmp_path):
    out = tmp_path / "b.json"
    result = cli("bench", exported_run, "--backend", "tflite,onnxruntime-cpu", "--runs", "2", "--warmup", "0",
                 "--out", tmp_path, "--json", out)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {(r["backend"], r.get("provider")) for r in rows} == {("tflite", None), ("onnxruntime", "cpu")}
    bad = cli("bench", exported_run, "--backend", "tflite,tpu")
    assert bad.returncode == 2 and "unknown backend tpu" in bad.stderr


@pytest.mark.parametrize("flag, given, understood", [
    ("--max-drop", "50%", "accuracy may drop 50 pp"), ("--max-drop", "0.5pp", "accuracy may drop 0.5 pp"),
    ("--min-accuracy", "90%", "accuracy >= 90.00%"), ("--min-accuracy", "90", "accuracy >= 90.00%"),
    ("--min-agreement", "98%", "top-1 agreement >= 98.00%"),
])
def test_thresholds_take_both_forms_and_the_gate_says_which_it_read(exported_run, cli, flag, given, understood):
    result = cli("gate", exported_run, flag, given)
    assert result.returncode in (0, 1) and understood in result.stdout.splitlines()[1], result.stdout + result.stderr


# --------------------------------------------------------------------------------------------- console noise

def test_bench_says_once_that_there_is_no_gpu(exported_run, cli, tmp_path):
    from edgeship.runtime.environment import gpu_description

    if gpu_description() is not None:
        pytest.skip("this machine has a GPU: its rows are measured")
    result = cli("bench", exported_run, "--runs", "2", "--warmup", "0", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if "unavailable" in line]  # no row per GPU provider in the table
    (said,) = [line for line in lines if line.startswith("not available on local:")]
    assert "onnxruntime-cuda" in said and "kept in bench.json" in said
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert sum(r["status"] == "unavailable" for r in rows) > 1  # still recorded, with reasons
    markdown = (tmp_path / "bench.md").read_text()
    assert "at least 0" not in markdown and "| unavailable |" not in markdown


def test_bench_md_names_the_baseline_and_the_direction(exported_run, cli, tmp_path):
    base = tmp_path / "base.json"
    assert cli("bench", exported_run / "bundle" / "model_int8.tflite", "--runs", "2", "--warmup", "0", "--json",
               base).returncode == 0
    known = json.loads(base.read_text())
    for row in known["rows"]:
        row["latency_ms"] = {"p25": 1e6, "p50": 1e6, "p75": 1e6}  # far slower than anything here
    base.write_text(json.dumps(known))
    result = cli("bench", exported_run / "bundle" / "model_int8.tflite", "--runs", "2", "--warmup", "0",
                 "--compare", base, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "faster)" in result.stdout and "time vs baseline" in result.stdout
    assert f"`{base}`" in (tmp_path / "out" / "bench.md").read_text()


def test_report_md_has_no_python_reprs_or_negative_zeros(exported_run):
    from edgeship.core.report import format_value

    assert format_value(-0.0001, "+.2f") == "+0.00" and format_value(-0.004, ".2f") == "0.00"
    assert format_value(-0.5, "+.2f") == "-0.50"
    training = (exported_run / "training" / "report.md").read_text()
    assert "{'" not in training and "Epochs: phase 1" in training and "Worst F1 first." in training
    assert "-0.00" not in (exported_run / "report.md").read_text()


def test_the_api_prints_nothing_with_show_progress_off(small_digits, tmp_path, capfd, caplog):
    """The library logs (here into caplog) and, with show_progress=False, writes nothing to the terminal."""
    from edgeship.bench import bench_run
    from edgeship.export import export_run
    from edgeship.train import TrainConfig, train

    capfd.readouterr()
    with caplog.at_level("INFO", logger="edgeship"):
        train(small_digits, tmp_path / "run", TrainConfig(backbone="small_cnn", image_size=32, epochs=1,
                                                          batch_size=16, show_progress=False))
        export_run(tmp_path / "run", ["tflite", "onnx"], show_progress=False)
        bench_run(tmp_path / "run", runs=2, warmup=0, show_progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out[-500:], err[-500:])
