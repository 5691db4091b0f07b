"""--max-drop's last rung, quantization-aware training, decided on validation figures the test feeds in: it runs
only when no full-int8 variant held the budget, it beats a slower float-layer variant, and every trial records
its validation Δ, speed-up over float32 and seconds. (The real fine-tune and conversion: tests/train/test_qat_run.py.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

import edgeship.export.quant_search as search
from edgeship.export.quant_diagnosis import LayerError
from edgeship.export.quant_search import Candidate, Recipe, ValidationSet

# validation accuracy and p50 ms per candidate (its bytes name it); the Keras model has 90 % on val
FLOAT_MS = 2.0


@dataclass
class FakeStrategy:
    figures: dict[bytes, tuple[float, float]]
    backend: str = "tflite"
    plain: Recipe = Recipe("min-max")
    equalization: object = None
    bias_correction: object = None
    qat_calls: list = field(default_factory=list)

    def __post_init__(self):
        outcome = SimpleNamespace(to_json=lambda: {"epochs": 3, "chosen_epoch": 2, "seconds": 12.5})
        self.job = SimpleNamespace(scratch_root=None, quantization_aware=lambda: outcome)

    def variants(self):
        yield Candidate(Recipe("min-max", equalized=True), b"cle")
        yield Candidate(Recipe("min-max", activation_bits=16), b"16x8", io="float")

    def diagnose(self, plain, images):
        return [LayerError(name="conv0", op="CONV_2D", error=1.0, metric="rmse", keep_float=["conv0"])]

    def with_float_layers(self, base, nodes):
        return Candidate(Recipe(base.recipe.method, float_nodes=tuple(nodes)), b"float-layers", io="float")

    def quantization_aware(self):
        self.qat_calls.append(True)
        return Candidate(Recipe("min-max", quantization_aware=True), b"qat", agrees_with=np.full(100, 3))

    def float_model(self):
        return b"float32"

    def close(self):
        pass


@pytest.fixture()
def val():
    labels = np.arange(100) % 4
    return ValidationSet("val", np.zeros((100, 8, 8, 3), np.float32), labels, 0.90, labels.copy())


def _refine(monkeypatch, figures, val, seen=None):
    def measure(backend, data, val_set, scratch=None):
        if seen is not None:
            seen[data] = val_set.reference_top
        accuracy, p50 = figures[data]
        agreement = 1.0 - abs(0.90 - accuracy)  # within budget means agreeing, as on a real model
        return accuracy, agreement, p50

    monkeypatch.setattr(search, "measure", measure)
    strategy = FakeStrategy(figures)
    return strategy, search._refine(strategy, b"plain", val, 0.5, False)


def test_qat_is_the_last_rung_and_beats_a_slower_float_layer_variant(monkeypatch, val):
    figures = {b"plain": (0.80, 1.0), b"cle": (0.85, 1.0), b"16x8": (0.90, 30.0), b"float-layers": (0.90, 1.6),
               b"qat": (0.898, 1.0), b"float32": (0.90, FLOAT_MS)}
    seen = {}
    strategy, result = _refine(monkeypatch, figures, val, seen)
    q = result.quantization
    # the QAT file is held to agree with the fake-quantized model it came from, the others with the float model
    assert (seen[b"qat"] == 3).all() and (seen[b"cle"] == val.reference_top).all()
    assert [t.label for t in q.trials] == ["plain", "equalized (CLE)", "16x8 (int16 activations)",
                                           "1 node(s) float", "quantization-aware training (QAT)"]
    assert strategy.qat_calls == [True] and result.data == b"qat"
    assert q.chosen == "quantization-aware training (QAT)" and q.float_layers == []
    assert q.calibration == "ranges learned by quantization-aware training"
    assert q.quantization_aware == {"epochs": 3, "chosen_epoch": 2, "seconds": 12.5}
    for trial in q.trials:  # why it chose: each rung's Δ, speed-up and time, from the figures fed in
        accuracy, p50 = figures[{"plain": b"plain", "equalized (CLE)": b"cle", "16x8 (int16 activations)": b"16x8",
                                 "1 node(s) float": b"float-layers",
                                 "quantization-aware training (QAT)": b"qat"}[trial.label]]
        assert trial.val_drop_pp == pytest.approx((0.90 - accuracy) * 100, abs=1e-4)
        assert trial.speedup_vs_float32 == pytest.approx(FLOAT_MS / p50, abs=1e-3)
        assert trial.seconds is not None and trial.seconds >= 0
    assert q.cost.vs_float32 == pytest.approx(1.0 / FLOAT_MS)


@pytest.mark.parametrize("holds", ["plain", "cle"])
def test_qat_is_not_run_when_a_full_int8_rung_holds(monkeypatch, val, holds):
    figures = {b"plain": (0.80, 1.0), b"cle": (0.80, 1.0), b"16x8": (0.90, 30.0), b"float-layers": (0.90, 1.6),
               b"qat": (0.90, 1.0), b"float32": (0.90, FLOAT_MS)}
    figures[holds.encode()] = (0.899, 1.0)
    strategy, result = _refine(monkeypatch, figures, val)
    assert strategy.qat_calls == [] and result.data == holds.encode()
    assert result.quantization.quantization_aware is None
    assert "quantization-aware training (QAT)" not in [t.label for t in result.quantization.trials]


def test_when_qat_also_misses_the_most_accurate_trial_is_kept_and_said(monkeypatch, val):
    figures = {b"plain": (0.70, 1.0), b"cle": (0.75, 1.0), b"16x8": (0.86, 30.0), b"float-layers": (0.87, 1.6),
               b"qat": (0.85, 1.0), b"float32": (0.90, FLOAT_MS)}
    strategy, result = _refine(monkeypatch, figures, val)
    assert strategy.qat_calls == [True] and result.data == b"float-layers"
    assert not result.quantization.met_budget and "no int8 variant" in result.warnings[0]


@pytest.mark.slow
def test_the_qat_rung_reads_no_test_image_and_records_its_fine_tune(run_copy, monkeypatch):
    """A real export under --max-drop with every post-training rung made to miss: the last rung fine-tunes the
    model with fake quantization and converts it; every image the choices loaded (train, calib, val) is listed,
    and none is from the test split."""
    import edgeship.core.pixels as pixels
    import edgeship.export.exporter as exporter
    from edgeship.core.splits import SplitManifest
    from edgeship.export import export_run

    loaded = []
    real = pixels.load_pixels

    def spy(paths, *args, **kwargs):
        loaded.extend(str(p) for p in paths)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(pixels, "load_pixels", spy)
    monkeypatch.setattr(exporter, "load_pixels", spy)
    monkeypatch.setattr(search, "MIN_AGREEMENT", 1.01)  # no trial can hold: every rung is climbed, QAT last
    monkeypatch.setattr(search, "MAX_LAYER_GROUPS", 1)  # one float-layer trial is enough here
    export_run(run_copy, ["tflite", "tflite_int8"], max_drop=0.5, show_progress=False)
    test_paths = {str(r.path) for r in SplitManifest.read(run_copy / "bundle" / "splits.csv").select("test")}
    assert loaded and not test_paths & set(loaded)
    report = __import__("json").loads((run_copy / "report.json").read_text())
    q = next(a for a in report["artifacts"] if a["name"] == "tflite_int8")["quantization"]
    qat = q["trials"][-1]
    assert qat["label"] == "quantization-aware training (QAT)" and qat["seconds"] > 0
    assert qat["speedup_vs_float32"] == pytest.approx(q["cost"]["float32_p50_ms"] / qat["p50_ms"], rel=1e-2)
    record = q["quantization_aware"]
    assert record["epochs"] == len(record["val_accuracy_by_epoch"]) - 1 and record["train_images"] > 0
