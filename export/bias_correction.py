"""Empirical bias correction (Nagel et al. 2019, section 4.2), on the Keras model before it is converted: the
second half of the data-free recipe, tried in the `--max-drop` search right after cross-layer equalization.

Rounding a layer's weights to int8 moves the mean of its output: with ε = Q(W) − W, a quantized layer computes
W·x + ε·x, and E[ε·x] is not zero per output channel (equalization makes it larger, by widening the weights of
narrow channels). Subtracting E[ε·x], measured on the calibration images, from what is added after the layer
restores the mean. The correction goes where the converter folds it: the beta of the BatchNormalization right
after a convolution (times its fold factor γ/σ), else the convolution's own bias.

ε is the per-channel symmetric int8 rounding both converters apply to Conv2D and DepthwiseConv2D weights (TFLite,
ONNX Runtime with per-channel weights), so candidates with per-tensor weights do not use it. With per-channel
scales, folding a BatchNorm's factor into the kernel before rounding gives the same ε times that factor, so the
correction computed here on the unfolded kernel holds for the folded one. Dense layers are left alone: how
TFLite rounds a fully-connected kernel (per tensor or per channel) depends on the converter's version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from edgeship.core.keras_layers import leaf_layers

CORRECTED = ("Conv2D", "DepthwiseConv2D")
INT8_MAX = 127.0


@dataclass(frozen=True)
class BiasCorrection:
    layers: list[str]  # "conv1 → bn1 (|shift| up to 0.031)"
    skipped: list[str]  # "conv9: no bias and no BatchNorm after it to take the correction"


def per_channel_int8(kernel: np.ndarray, depthwise: bool) -> np.ndarray:
    """KERNEL rounded to symmetric int8 with one scale per output channel (Conv2D: last axis; depthwise:
    input channel × multiplier), as float again."""
    shape = kernel.shape
    flat = kernel.reshape(-1, shape[-2] * shape[-1]) if depthwise else kernel.reshape(-1, shape[-1])
    scale = np.abs(flat).max(axis=0) / INT8_MAX
    scale = np.where(scale > 0, scale, 1.0)
    return (np.clip(np.round(flat / scale), -INT8_MAX, INT8_MAX) * scale).reshape(shape)


def _linear(layer, kernel):
    """LAYER's convolution alone (no bias, no activation) with KERNEL, as a function of its input."""
    from edgeship.core.tfenv import import_keras

    _, keras = import_keras()
    ops = keras.ops
    if type(layer).__name__ == "DepthwiseConv2D":
        return lambda x: ops.depthwise_conv(x, kernel, strides=layer.strides, padding=layer.padding,
                                            data_format=layer.data_format, dilation_rate=layer.dilation_rate)
    return lambda x: ops.conv(x, kernel, strides=layer.strides, padding=layer.padding,
                              data_format=layer.data_format, dilation_rate=layer.dilation_rate)


def _targets(model) -> tuple[list[tuple[object, object | None]], list[str]]:
    """(convolution, the BatchNorm right after it or None) for each convolution that can take a correction."""
    layers, targets, skipped = leaf_layers(model), [], []
    for index, layer in enumerate(layers):
        if type(layer).__name__ not in CORRECTED or getattr(layer, "groups", 1) != 1:
            continue
        after = layers[index + 1] if index + 1 < len(layers) else None
        batchnorm = after if type(after).__name__ == "BatchNormalization" and _reads(after, layer) else None
        if batchnorm is None and not layer.use_bias:
            skipped.append(f"{layer.name}: no bias and no BatchNorm after it to take the correction")
            continue
        if batchnorm is not None and getattr(layer, "activation", None) is not None and \
                getattr(layer.activation, "__name__", "linear") != "linear":
            skipped.append(f"{layer.name}: an activation between it and {batchnorm.name}")
            continue
        targets.append((layer, batchnorm))
    return targets, skipped


def _reads(batchnorm, layer) -> bool:
    """Does BATCHNORM read LAYER's output (and nothing else)?"""
    try:
        return batchnorm.input is layer.output or getattr(batchnorm.input, "name", None) == layer.output.name
    except (AttributeError, ValueError):  # a layer used twice has no single input
        return False


def mean_shifts(model, targets: list[tuple[object, object | None]], images: np.ndarray,
                batch: int = 8) -> dict[str, np.ndarray]:
    """{convolution name: E[ε·x] per output channel} over IMAGES for the TARGETS' convolutions, the inputs x each
    sees in the float MODEL. Measured while the model runs: each target's call is wrapped for the pass (nested
    backbones too)."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    wrapped = []
    for layer, _batchnorm in targets:
        kernel = np.asarray(layer.get_weights()[0], dtype=np.float32)
        error = (per_channel_int8(kernel.astype(np.float64), type(layer).__name__ == "DepthwiseConv2D")
                 - kernel).astype(np.float32)
        shifted = _linear(layer, error)
        original = layer.call

        def call(inputs, *args, _layer=layer, _shifted=shifted, _original=original, **kwargs):
            out = np.asarray(_shifted(inputs), dtype=np.float64)
            reduced = out.reshape(-1, out.shape[-1])
            sums[_layer.name] = sums.get(_layer.name, 0.0) + reduced.sum(axis=0)
            counts[_layer.name] = counts.get(_layer.name, 0) + reduced.shape[0]
            return _original(inputs, *args, **kwargs)

        layer.call = call
        wrapped.append(layer)
    try:
        for start in range(0, len(images), batch):
            model(np.asarray(images[start:start + batch], dtype=np.float32), training=False)
    finally:
        for layer in wrapped:
            del layer.call  # the class's call again
    return {name: sums[name] / counts[name] for name in sums}


def correct_biases(model, images: np.ndarray) -> BiasCorrection:
    """Correct MODEL in place for the int8 rounding of its convolutions' weights, measured on IMAGES."""
    targets, skipped = _targets(model)
    shifts = mean_shifts(model, targets, images)
    done = []
    for layer, batchnorm in targets:
        shift = shifts.get(layer.name)
        if shift is None:
            skipped.append(f"{layer.name}: not reached by the images")
            continue
        if batchnorm is not None:
            gamma, beta, mean, variance = (np.array(w, dtype=np.float64) for w in batchnorm.get_weights())
            fold = gamma / np.sqrt(variance + batchnorm.epsilon)
            batchnorm.set_weights([w.astype(np.float32) for w in (gamma, beta - fold * shift, mean, variance)])
            moved = np.abs(fold * shift)
            done.append(f"{layer.name} → {batchnorm.name} (|shift| up to {moved.max():.3g})")
        else:
            weights = layer.get_weights()
            weights[1] = (np.asarray(weights[1], dtype=np.float64) - shift).astype(np.float32)
            layer.set_weights(weights)
            done.append(f"{layer.name} (|shift| up to {np.abs(shift).max():.3g})")
    return BiasCorrection(done, skipped)
