"""A newcomer's folder of real photos: 6 classes, 40-58 images each, assorted sizes and file types (crops of
scikit-image's sample photographs). The defaults must train a useful model on it, say when and why training
stopped early, and warn when the predictions collapse onto a few classes."""

from __future__ import annotations

import csv
import json

import pytest

skimage = pytest.importorskip("skimage")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    from edgeship_test_photos import write_photo_folder

    return write_photo_folder(tmp_path_factory.mktemp("photos") / "photos", classes=6, per_class=(40, 58), seed=0)


@pytest.fixture(scope="module", autouse=True)
def _photos_helper():
    import importlib.util
    import sys
    from pathlib import Path

    if "edgeship_test_photos" not in sys.modules:
        spec = importlib.util.spec_from_file_location("edgeship_test_photos", Path(__file__).parents[1] / "photos.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["edgeship_test_photos"] = module
        spec.loader.exec_module(module)


def _history(run, name="history.csv"):
    with open(run / "training" / name, newline="") as handle:
        return list(csv.DictReader(handle))


def test_default_training_comes_within_a_few_points_of_a_long_run(photo_folder, tmp_path, capsys):
    from edgeship.train import TrainConfig, train

    default = train(photo_folder, tmp_path / "default", TrainConfig(image_size=64, show_progress=False))
    long = train(photo_folder, tmp_path / "long", TrainConfig(image_size=64, epochs=24, patience=24,
                                                              show_progress=False))
    with capsys.disabled():
        print(f"\nsmall photo folder, 64 px, small_cnn: default {default.test_accuracy:.2%} in {default.epochs_run} "
              f"epochs, long run {long.test_accuracy:.2%} in {long.epochs_run} epochs")
    assert default.test_accuracy >= long.test_accuracy - 0.05
    # the statistics follow the weights: validation is far above chance (1/6) from the first epochs on
    first = _history(tmp_path / "default")[:2]
    assert max(float(row["val_accuracy"]) for row in first) >= 0.5, first
    training = default.bundle.provenance["training"]
    assert training["precise_batchnorm"] is True
    if default.epochs_run < 10:  # stopped early: it says so, with the reason and the flag
        (note,) = default.stopped_early
        assert note.startswith(f"phase1 stopped at epoch {default.epochs_run}/10: no validation improvement for 5 epochs")
        assert training["stopped_early"] == [note]


def test_collapsed_predictions_are_warned_about_and_recorded(photo_folder, tmp_path, monkeypatch, caplog):
    """One epoch with BatchNorm's own moving averages (what training did before precise BN): the model answers
    a few classes on validation, and train says so instead of leaving it to the test figures."""
    from edgeship.train import TrainConfig, precise_bn, train

    monkeypatch.setattr(precise_bn, "wanted", lambda *args: False)
    with caplog.at_level("WARNING", logger="edgeship"):
        result = train(photo_folder, tmp_path / "run", TrainConfig(image_size=64, epochs=1, show_progress=False))
    warning = next(r.getMessage() for r in caplog.records if "collapsed onto a few classes" in r.getMessage())
    assert "classes on the validation split (never:" in warning and "--allow-collapsed" in warning
    report = json.loads((tmp_path / "run" / "training" / "report.json").read_text())
    assert result.bundle.provenance["training"]["precise_batchnorm"] is False
    assert any("collapsed" in w for w in report["training"].get("warnings", []))
