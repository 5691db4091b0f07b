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


def test_accuracy_latency_plots_stay_legible():
    """Ties become latency bars with one label per bar; a spread stays within 0-100 % with its legend beside
    the axes and only point numbers on the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from edgeship.core.plots import Point, accuracy_latency_figure

    tied = [Point(f"artifact {i}", 0.1 * (i + 1), 0.9944, 1000) for i in range(9)]
    fig = accuracy_latency_figure(tied, "demo")
    axis = fig.axes[0]
    assert [t.get_text().split(". ", 1)[1] for t in axis.get_yticklabels()] == [p.label for p in tied]
    assert "tie on test accuracy (99.44 %)" in axis.get_title()
    plt.close(fig)

    spread = [Point(f"artifact {i}", 0.1 * (i + 1), 1.0 - 0.01 * i, 1000) for i in range(9)]
    fig = accuracy_latency_figure(spread, "demo", reference=1.0)
    axis = fig.axes[0]
    assert axis.get_ylim()[1] == 100.0 and axis.get_ylim()[0] >= 0
    fig.canvas.draw()
    legend = axis.get_legend().get_window_extent()
    assert legend.x0 >= axis.get_window_extent().x1  # beside the axes, never over the points
    assert sorted(t.get_text() for t in axis.texts) == sorted(str(i + 1) for i in range(9))
    plt.close(fig)
