"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias
Correction"), on the Keras model before it is converted: a step of the `--max-drop` search tried before any layer
is left in float, so int8 keeps its speed.

For each BatchNorm whose output reaches a Conv2D or Dense only through layers that commute with a positive
per-channel scale (ReLU, max/average pooling, dropout, linear; core/keras_graph.py), channel c gets
s_c = sqrt(r1_c / r2_c), where r1_c is the range of the weights that make channel c (the convolution before the
BatchNorm with the BatchNorm folded in, or the BatchNorm's own scale) and r2_c that of the next layer's weights that
read it. The BatchNorm's gamma and beta are divided by s_c and the next layer's input-channel weights multiplied by
it: the float function is unchanged, and one per-tensor int8 scale no longer has to span a channel far wider
than the rest. Pairs behind ReLU6 or hard-swish (clipping, not scale-equivariant) are skipped and reported.
Bias correction (export/bias_correction.py) is the search's next candidate, on the equalized model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from edgeship.export.keras_graph import scale_pairs

EPSILON = 1e-12
MAX_SCALE = 1e4  # a channel whose weights are all ~0 is left alone rather than blown up


@dataclass(frozen=True)
class Equalized:
    pairs: list[str]  # "bn0 → conv1 (max scale 1.0e+02)"
    skipped: list[str]  # "bn2 → conv3: re_lu_6 (ReLU) does not commute with a scale"


def equalize(model) -> Equalized:
    """Equalize MODEL in place; what was done and what was skipped, for the report."""
    done, skipped = [], []
    for pair in scale_pairs(model):
        bn, consumer = pair.batchnorm, pair.consumer
        if pair.blocked_by is not None:
            skipped.append(f"{bn.name} → {consumer.name}: {pair.blocked_by} does not commute with a scale")
            continue
        gamma, beta, mean, variance = (np.array(w, dtype=np.float64) for w in bn.get_weights())
        fold = gamma / np.sqrt(variance + bn.epsilon)  # what the BatchNorm multiplies channel c by
        if pair.producer is not None:
            kernel = np.asarray(pair.producer.get_weights()[0], dtype=np.float64)
            channels_last = kernel.reshape(-1, kernel.shape[-1]) if type(pair.producer).__name__ != "DepthwiseConv2D" \
                else kernel.reshape(-1, kernel.shape[-2] * kernel.shape[-1])
            r1 = np.abs(channels_last * fold).max(axis=0)
        else:
            r1 = np.abs(fold)
        weights = [np.array(w) for w in consumer.get_weights()]
        kernel = weights[0].astype(np.float64)  # Conv2D (h, w, in, out), Dense (in, out): input axis -2
        r2 = np.abs(np.moveaxis(kernel, -2, 0).reshape(kernel.shape[-2], -1)).max(axis=1)
        if r1.shape != r2.shape:
            skipped.append(f"{bn.name} → {consumer.name}: {r1.shape[0]} channels made, {r2.shape[0]} read")
            continue
        scale = np.where((r1 > EPSILON) & (r2 > EPSILON), np.sqrt(np.maximum(r1, EPSILON) / np.maximum(r2, EPSILON)), 1.0)
        scale = np.clip(scale, 1.0 / MAX_SCALE, MAX_SCALE)
        bn.set_weights([(gamma / scale).astype(np.float32), (beta / scale).astype(np.float32),
                        mean.astype(np.float32), variance.astype(np.float32)])
        weights[0] = (kernel * scale.reshape((-1, 1))).astype(np.float32)
        consumer.set_weights(weights)
        done.append(f"{bn.name} → {consumer.name} (scales {scale.min():.3g}–{scale.max():.3g})")
    return Equalized(done, skipped)


def plain_copy(model):
    """A clone of MODEL with the same weights: what a data-free step changes (the export's model stays as trained)."""
    from edgeship.core.tfenv import import_keras

    _, keras = import_keras()
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def equalized_copy(model):
    """A clone of MODEL with its weights equalized (the export's Keras model stays as trained)."""
    twin = plain_copy(model)
    return twin, equalize(twin)
