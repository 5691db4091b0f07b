"""Where a positive per-channel scale can move from one layer to the next without changing the model's function:
a BatchNormalization whose output reaches a Conv2D or Dense only through layers that commute with such a scale
(ReLU, max- and global-average pooling, dropout, linear). The outlier injector (export/outlier.py) uses it to make
a model int8 hurts; cross-layer equalization (export/equalize.py) uses it to undo that."""

from __future__ import annotations

from dataclasses import dataclass

from edgeship.core.keras_layers import leaf_layers

# Layers between the BatchNorm and the convolution that commute with a positive per-channel scale.
PASS_THROUGH = ("ReLU", "MaxPooling2D", "GlobalAveragePooling2D", "Dropout", "Activation")
CONSUMERS = ("Conv2D", "Dense")  # what reads the scaled channel and is scaled back: kernel input axis -2


def commutes(layer) -> bool:
    """Does LAYER commute with a positive per-channel scale? ReLU6, leaky ReLU, hard-swish and swish do not."""
    kind = type(layer).__name__
    if kind not in PASS_THROUGH:
        return False
    if kind == "ReLU":
        return layer.max_value is None and not float(layer.negative_slope)
    if kind == "Activation":
        return getattr(layer.activation, "__name__", "") in ("relu", "linear")
    return True


@dataclass(frozen=True)
class ScalePair:
    batchnorm: object  # the BatchNormalization layer whose output channels are scaled
    consumer: object  # the Conv2D or Dense that reads them, scaled back on its kernel's input axis
    producer: object | None  # the Conv2D right before the BatchNorm (its weights set the channel's range), if any
    blocked_by: str | None = None  # the layer on the way that does not commute (the pair cannot be used)


def scale_pairs(model) -> list[ScalePair]:
    """Every BatchNorm with the next Conv2D/Dense after it; `blocked_by` names what stops a scale on the way."""
    layers, pairs = leaf_layers(model), []
    for index, layer in enumerate(layers):
        if type(layer).__name__ != "BatchNormalization":
            continue
        following = layers[index + 1:]
        consumer = next((i for i, nxt in enumerate(following) if type(nxt).__name__ in CONSUMERS), None)
        if consumer is None:
            continue
        blocker = next((between for between in following[:consumer] if not commutes(between)), None)
        before = layers[index - 1] if index else None
        producer = before if type(before).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense") else None
        why = f"{blocker.name} ({type(blocker).__name__})" if blocker is not None else None
        branch = next((x for x in [layer, *following[:consumer]] if len(readers(x)) > 1), None)
        if why is None and branch is not None:  # a residual Add reads it too: the scale would reach the sum
            other = next(r for r in readers(branch) if r not in (*following[:consumer + 1],))
            why = f"{other.name} ({type(other).__name__}, also reads {branch.name})"
        pairs.append(ScalePair(layer, following[consumer], producer, why))
    return pairs


def readers(layer) -> list:
    """The layers (and Keras ops) that take LAYER's output, in its graph."""
    return [node.operation for node in getattr(layer, "_outbound_nodes", [])]
