"""The pictures people look at say what they show: whole layer names, bars whose length is their value, a
Grad-CAM overlay with its class, score and colour scale."""

from __future__ import annotations

import numpy as np


def test_layer_names_lose_their_shared_prefix_not_their_start():
    from edgeship.core.plots import LAYER_NAME_CHARS, short_layer_names

    layers = [{"name": f"edgeship_small_cnn_1/backbone_1/{name}"} for name in ("conv0_1/Conv2D", "pool1_1/MaxPool",
                                                                               "bn3_1/FusedBatchNormV3;relu3")]
    assert short_layer_names(layers) == ["conv0_1/Conv2D", "pool1_1/MaxPool", "bn3_1/FusedBatchNormV3"]
    long = short_layer_names([{"name": "a/" + "x" * 80}, {"name": "b/y"}])
    assert long[0].startswith("…") and len(long[0]) == LAYER_NAME_CHARS and long[1] == "b/y"
    mixed = short_layer_names([{"name": "m_1/backbone_1/relu1_1/Relu"}, {"name": "m_1/backbone_1/relu2_1/Relu"},
                               {"name": "m_1/probabilities_1/MatMul"}, {"name": "StatefulPartitionedCall_1:0"}])
    assert mixed == ["relu1_1/Relu", "relu2_1/Relu", "probabilities_1/MatMul", "StatefulPartitionedCall_1:0"]


def test_latency_bars_start_at_zero_on_a_linear_axis():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeship.core.plots import Point, accuracy_latency_figure

    tied = [Point("fast", 0.318, 0.99), Point("slow", 0.915, 0.99)]
    axis = accuracy_latency_figure(tied, "bench", log_latency=True).axes[0]  # bench asks for log on scatters
    assert axis.get_xscale() == "linear" and axis.get_xlim()[0] == 0
    widths = sorted(bar.get_width() for bar in axis.patches)
    assert widths == [0.318, 0.915]  # 1:2.9 on the page, as in the figures
    plt.close("all")


def test_gradcam_picture_names_the_class_its_score_and_the_colour_scale():
    from pathlib import Path

    from edgeship.train.gradcam import Explanation, explanation_figure

    pixels = np.zeros((32, 32, 3), np.uint8)
    heatmap = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    figure = explanation_figure(pixels, Explanation(Path("cat.png"), 2, "cat", 0.873, heatmap))
    assert figure._suptitle.get_text() == "cat.png: predicted cat (87.3%)"
    image, overlay, bar = figure.axes
    assert bar.get_ylabel() == "relative importance (Grad-CAM)" and bar.get_ylim() == (0.0, 1.0)
    assert [image.get_title(), overlay.get_title()] == ["model input", "what decided it"]
    chosen = explanation_figure(pixels, Explanation(Path("cat.png"), 1, "dog", 0.05, heatmap), chosen=True)
    assert chosen._suptitle.get_text() == "cat.png: explained class dog (5.0%)"
