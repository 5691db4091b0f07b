"""The scale benchmark's own machinery: the Food-101-shaped generator, the growth fit, one tiny end-to-end run."""

from __future__ import annotations

import json

import pytest
from edgeship.bench.scale import growth, markdown, measure


def test_growth_fit_recovers_the_exponent():
    rows = [{"n_images": n, "t": 3.0 * n ** 0.5} for n in (1010, 10100, 101000)]
    assert growth(rows, lambda r: r["t"]) == pytest.approx(0.5, abs=0.01)
    assert growth(rows[:1], lambda r: r["t"]) is None


@pytest.mark.slow
def test_scale_benchmark_end_to_end_on_a_tiny_food101_tree(tmp_path):
    """808 drawn images (8 per class): the tree has Food-101's layout, and every step's figures are read back
    from what train and export recorded, not made up by the benchmark."""
    row = measure(808, tmp_path / "data", tmp_path / "out",  # 64 px instead of the benchmark's 224: the same steps
                  ["--backbone", "small_cnn", "--freeze-backbone", "--image-size", "64", "--epochs", "1"])
    tree = tmp_path / "data" / "food101_808"
    classes = (tree / "meta" / "classes.txt").read_text().split()
    assert len(classes) == 101 and len(list((tree / "images").rglob("*.jpg"))) == 808
    assert (tree / "meta" / "test.txt").read_text().split()[0] == f"{classes[0]}/6"  # 3/4 train, 1/4 test
    assert row["n_test"] == 202 and row["train"]["exit"] == row["export"]["exit"] == 0
    report = json.loads((tmp_path / "out" / "run_808" / "report.json").read_text())
    assert row["parity_seconds"] == report["timing"]["total_seconds"] > 0
    assert row["export"]["peak_rss_mib"] > 100 and row["feature_cache_seconds"] > 0
    assert set(row["artifacts"]) == {"tflite", "tflite_int8", "onnx_int8"}
    assert "| 808 |" in markdown([row])
