"""Accuracy beside latency, legible: one plot for the parity report and for bench.

Points are numbered and explained in a legend beside the axes (never over the data); the accuracy axis
stops at 100 %. When every point has the same accuracy (the usual demo: all artifacts tie), a scatter
would pile every label on one line, so the plot says so and shows latency bars instead.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from edgeship.runtime.fileio import atomic_write_bytes

TIE_PP = 0.05  # accuracies closer than this (percentage points) count as a tie


def save_png(fig, png_path: Path) -> Path:
    """Render a matplotlib figure to PNG bytes, close it, write atomically."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(png_path, buffer.getvalue())


@dataclass(frozen=True)
class Point:
    label: str  # what the legend says, e.g. "tflite_int8 — tflite, threads: default, batch 1"
    latency_ms: float
    accuracy: float | None  # a fraction
    size_bytes: int | None = None
    highlighted: bool = False  # e.g. Pareto-optimal: outlined


def plot_accuracy_latency(points: list[Point], png: Path, title: str, reference: float | None = None,
                          log_latency: bool = False) -> Path | None:
    """Write the plot to PNG (None when no point has a latency)."""
    fig = accuracy_latency_figure(points, title, reference, log_latency)
    return save_png(fig, png) if fig is not None else None


def accuracy_latency_figure(points: list[Point], title: str, reference: float | None = None,
                            log_latency: bool = False):
    """The matplotlib figure (tests read its axes: limits, legend placement, labels)."""
    points = [p for p in points if p.latency_ms is not None and p.latency_ms > 0]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accuracies = [p.accuracy * 100 for p in points if p.accuracy is not None]
    tie = not accuracies or max(accuracies) - min(accuracies) < TIE_PP
    colours = plt.get_cmap("tab20").colors
    if tie:
        order = sorted(range(len(points)), key=lambda i: points[i].latency_ms)
        values = [points[i].latency_ms for i in order]
        # a bar's length is its value: bars start at zero on a linear axis (a log axis made 0.318 against 0.915 ms
        # look like 1:10). When the slowest is far slower (the Keras reference beside int8), a second panel shows
        # the fast ones on their own linear scale, so they do not shrink to slivers.
        fast = [n for n, v in enumerate(values) if v <= values[0] * ZOOM_SPREAD]
        panels = [list(range(len(order)))] + ([fast] if len(fast) < len(order) and len(fast) > 1 else [])
        heights = [0.32 * len(rows) + 1.2 for rows in panels]
        fig, axes = plt.subplots(len(panels), 1, figsize=(10, max(3.6, sum(heights) + 0.4)), squeeze=False,
                                 height_ratios=heights)
        for axis, rows in zip(axes[:, 0], panels):
            _latency_bars(axis, [points[order[n]] for n in rows], [n + 1 for n in rows], [colours[order[n] % 20] for n in rows])
        shared = f"{accuracies[0]:.2f} %" if accuracies else "no accuracy figures"
        axes[0, 0].set_title(f"{title}\nall artifacts tie on test accuracy ({shared}): latency only", fontsize=10)
        if len(panels) > 1:
            axes[1, 0].set_title(f"the {len(fast)} fastest (within {ZOOM_SPREAD:g}× of the fastest), on their own scale",
                                 fontsize=9)
        fig.tight_layout()
        return fig
    fig, axis = plt.subplots(figsize=(10, max(3.6, 0.32 * len(points) + 1.6)))
    biggest = max((p.size_bytes or 1) for p in points)
    for n, p in enumerate(points):
        if p.accuracy is None:
            continue
        axis.scatter(p.latency_ms, min(100.0, p.accuracy * 100), s=40 + 400 * (p.size_bytes or 0) / biggest,
                     color=colours[n % 20], alpha=0.7, edgecolors="black" if p.highlighted else "none",
                     label=f"{n + 1}. {p.label}")
        axis.annotate(str(n + 1), (p.latency_ms, min(100.0, p.accuracy * 100)), fontsize=7, ha="center",
                      va="center")
    if reference is not None:
        axis.axhline(reference * 100, color="gray", linestyle="--", linewidth=1, label="Keras reference")
    low = min(accuracies)
    axis.set_ylim(max(0.0, low - max(1.0, (100 - low) * 0.2)), 100.0)
    axis.set_xscale("log" if log_latency else "linear")
    axis.set_xlabel("p50 latency (ms)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(f"{title} (marker area ~ file size)", fontsize=10)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    axis.grid(alpha=0.3)
    fig.tight_layout()
    return fig


ZOOM_SPREAD = 20.0  # latency bars spanning more than this get a second panel for the fast ones


def _latency_bars(axis, points: list[Point], numbers: list[int], colours) -> None:
    values = [p.latency_ms for p in points]
    bars = axis.barh(range(len(points)), values, color=colours,
                     edgecolor=["black" if p.highlighted else "none" for p in points])
    axis.set_yticks(range(len(points)), [f"{n}. {p.label}" for n, p in zip(numbers, points)], fontsize=8)
    axis.invert_yaxis()
    for bar, value in zip(bars, values):
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.3g} ms", va="center", fontsize=7)
    axis.set_xscale("linear")
    axis.set_xlim(0, max(values) * 1.18)
    axis.set_xlabel("p50 latency (ms)")
    axis.grid(alpha=0.3)


def plot_accuracy_bars(names: list[str], accuracies: list[float], png: Path, title: str,
                       reference: float | None = None) -> Path | None:
    """Test accuracy per artifact (before any latency was measured), one labelled bar each, axis 0-100 %."""
    if not names:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(8, max(3.0, 0.32 * len(names) + 1.4)))
    bars = axis.barh(range(len(names)), [a * 100 for a in accuracies], color="#4c72b0")
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.invert_yaxis()
    for bar, value in zip(bars, accuracies):
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.2%}", va="center", fontsize=7)
    if reference is not None:
        axis.axvline(reference * 100, color="gray", linestyle="--", linewidth=1, label="Keras reference")
        axis.legend(loc="lower left", fontsize=7)
    axis.set_xlim(0, 112)  # 0-100 %, and room for the values printed after the bars
    axis.set_xticks(range(0, 101, 20))
    axis.set_xlabel("test accuracy (%)")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return save_png(fig, png)


def plot_layer_errors(panels: list[tuple[str, list[dict]]], png: Path, top: int = 12) -> Path | None:
    """One horizontal bar panel per int8 artifact: its worst layers' quantization error (report `layers`),
    drawn so that a longer bar is always worse (SQNR in dB is plotted as its distance below 40 dB)."""
    panels = [(name, layers[:top]) for name, layers in panels if layers]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = sum(0.28 * len(layers) + 1.0 for _, layers in panels) + 0.6
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, height), squeeze=False)
    for axis, (name, layers) in zip(axes[:, 0], panels):
        metric = layers[0].get("metric", "")
        values = [_badness(layer) for layer in layers]
        labels = [f"{name} ({layer.get('op')})" for name, layer in zip(short_layer_names(layers), layers)]
        colours = [("tab:orange" if layer["hint"].startswith("RMSE/scale") else "tab:red") if layer.get("hint")
                   else "tab:blue" for layer in layers]
        axis.barh(range(len(layers)), values, color=colours)
        axis.set_yticks(range(len(layers)), labels, fontsize=7)
        axis.invert_yaxis()
        axis.set_title(f"{name}: worst layers by {metric} (red: a known cause is hinted; orange: suspect)", fontsize=9)
        axis.set_xlabel("RMSE / scale (≈0.29 is the rounding floor)" if metric == "rmse/scale"
                        else "40 dB − SQNR of the noise the layer adds (longer is worse)", fontsize=8)
        if metric == "rmse/scale":
            axis.axvline(0.7, color="grey", linestyle="--", linewidth=0.8)
    fig.tight_layout()
    return save_png(fig, png)


LAYER_NAME_CHARS = 48


def short_layer_names(layers: list[dict]) -> list[str]:
    """Layer names without the path most of them share (`edgeship_small_cnn_1/backbone_1/` says nothing), shortened
    from the left with an ellipsis, never cut mid-way without saying so. A prefix counts when at least half of
    the names start with it; each name loses the longest such prefix it has."""
    names = [layer["name"].split(";")[0] for layer in layers]
    counts: dict[str, int] = {}
    for name in names:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth]) + "/"
            counts[prefix] = counts.get(prefix, 0) + 1
    shared = [prefix for prefix, count in counts.items() if count >= max(2, len(names) / 2)]
    short = []
    for name in names:
        cut = max((len(prefix) for prefix in shared if name.startswith(prefix)), default=0)
        short.append(name[cut:])
    return [s if len(s) <= LAYER_NAME_CHARS else "…" + s[-(LAYER_NAME_CHARS - 1):] for s in short]


def _badness(layer: dict) -> float:
    error = layer.get("error")
    if not isinstance(error, (int, float)):
        return 0.0
    return float(error) if layer.get("metric") == "rmse/scale" else max(0.0, 40.0 - float(error))


def plot_op_breakdown(bars: list[tuple[str, dict[str, float], float | None]], png: Path, top: int = 7) -> Path | None:
    """One horizontal stacked bar per artifact: its time by op type (bench --profile), the TOP op types of all
    artifacts in their own colours and the rest as "other", with the whole model's p50 marked beside it."""
    bars = [(label, by_op, p50) for label, by_op, p50 in bars if by_op]
    if not bars:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals: dict[str, float] = {}
    for _, by_op, _ in bars:
        for op, ms in by_op.items():
            totals[op] = totals.get(op, 0.0) + ms
    kinds = [op for op, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:top]]
    fig, axis = plt.subplots(figsize=(10, 0.55 * len(bars) + 1.8))
    colours = plt.get_cmap("tab10")
    for row, (label, by_op, p50) in enumerate(bars):
        left = 0.0
        for k, op in enumerate([*kinds, "other"]):
            ms = by_op.get(op, 0.0) if op != "other" else sum(v for o, v in by_op.items() if o not in kinds)
            if ms > 0:
                axis.barh(row, ms, left=left, color=colours(k % 10) if op != "other" else "lightgrey",
                          label=op if row == next(i for i, b in enumerate(bars) if op in b[1] or op == "other") else None)
            left += ms
        if p50:
            axis.plot([p50, p50], [row - 0.4, row + 0.4], color="black", linewidth=1.5)
    axis.set_yticks(range(len(bars)), [label for label, _, _ in bars], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("ms per image (the black tick: the whole model's p50, measured beside the nodes)", fontsize=8)
    axis.set_title("where the time goes, by op type", fontsize=10)
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axis.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_png(fig, png)
