"""A model that int8 really hurts, made on purpose: one activation channel scaled up, the float model unchanged.

ImageNet MobileNetV3 or EfficientNet lose points under post-training int8 because a few activation channels
span a range far wider than the rest, and a per-tensor int8 scale sized for them rounds the others to a
handful of steps. `add_outlier_channel` reproduces that on any model where a BatchNormalization feeds a
convolution (or, through global pooling, a Dense layer) through ReLU and pooling: channel c of the BatchNorm is
multiplied by `factor` (gamma and beta) and the next layer's weights for input channel c divided by it. ReLU and max-pooling commute with a
positive per-channel scale, so the float model computes the same function (to rounding), while its int8
conversion degrades: ×300 on the demo CNN costs tens of points in TFLite int8 and ONNX QDQ alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.core.derived_run import check_new_run, write_derived_run
from edgeship.core.keras_layers import leaf_layers
from edgeship.core.layout import RunLayout
from edgeship.core.tensorflow import load_keras_model
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import sha256_file
from edgeship.runtime.spec import Bundle

from .keras_graph import readers, scale_pairs


@dataclass(frozen=True)
class OutlierChannel:
    batchnorm: str
    conv: str
    channel: int
    factor: float

    def describe(self) -> str:
        return (f"channel {self.channel} of {self.batchnorm} scaled ×{self.factor:g}, {self.conv}'s weights for it "
                f"÷{self.factor:g} (float model unchanged)")


def add_outlier_channel(model, factor: float = 300.0, batchnorm: str | None = None, channel: int = 0) -> OutlierChannel:
    """Scale one BatchNorm channel up by FACTOR and the next convolution down (in place). BATCHNORM names the
    layer (default: the first one whose path to the next Conv2D only commutes with the scale)."""
    if factor <= 0:
        raise UsageError(f"factor must be positive, got {factor}")
    pairs = [p for p in scale_pairs(model) if not batchnorm or p.batchnorm.name == batchnorm]
    if batchnorm and not pairs:
        names = [layer.name for layer in leaf_layers(model) if type(layer).__name__ == "BatchNormalization"]
        raise UsageError(f"no BatchNormalization named {batchnorm!r}; this model has {', '.join(names[:12]) or 'none'}")
    usable = [p for p in pairs if p.blocked_by is None]
    if not usable:
        if batchnorm:
            raise UsageError(f"{batchnorm}: no Conv2D or Dense follows it through ReLU/pooling only")
        raise UsageError("no BatchNormalization feeds a Conv2D or Dense through ReLU/pooling only: cannot add an "
                         "outlier channel (small_cnn has four)")
    layer, target = usable[0].batchnorm, usable[0].consumer
    _scale_batchnorm(layer, channel, factor)
    _scale_reader(target, channel, 1.0 / factor)
    return OutlierChannel(layer.name, target.name, channel, float(factor))


def _scale_batchnorm(layer, channel: int, factor: float) -> None:
    """Channel CHANNEL of BatchNorm LAYER's output times FACTOR (gamma and beta)."""
    gamma, beta, mean, variance = (np.array(w) for w in layer.get_weights())
    if not 0 <= channel < gamma.shape[0]:
        raise UsageError(f"{layer.name} has {gamma.shape[0]} channels; channel {channel} does not exist")
    gamma[channel] *= factor
    beta[channel] *= factor
    layer.set_weights([gamma, beta, mean, variance])


def _scale_reader(layer, channel: int, factor: float) -> None:
    """LAYER's weights for input channel CHANNEL times FACTOR: Conv2D kernel (h, w, in, out), Dense kernel (in, out)."""
    weights = [np.array(w) for w in layer.get_weights()]
    weights[0][..., channel, :] *= factor
    layer.set_weights(weights)


def add_residual_outlier(model, factor: float = 30.0, channel: int = 0) -> OutlierChannel:
    """The same on a residual network whose BatchNorms feed ReLU6 (MobileNetV2), where no BatchNorm → conv pair is
    free for equalization: channel c of both BatchNorms summed by the first residual Add is scaled by FACTOR, and
    every convolution reading that channel (the next block's expansion, the one after the Add) divided by it. The
    sum is linear, so the float model is unchanged; int8's per-tensor scale of the sum is not."""
    if factor <= 0:
        raise UsageError(f"factor must be positive, got {factor}")
    for add in (layer for layer in leaf_layers(model) if type(layer).__name__ == "Add"):
        sources = [tensor._keras_history.operation for tensor in add._inbound_nodes[0].input_tensors]
        convs = [reader for source in sources for reader in readers(source) if reader is not add] + readers(add)
        if (len(sources) == 2 and all(type(s).__name__ == "BatchNormalization" for s in sources)
                and convs and all(type(r).__name__ == "Conv2D" for r in convs)):
            for bn in sources:
                _scale_batchnorm(bn, channel, factor)
            for conv in convs:
                _scale_reader(conv, channel, 1.0 / factor)
            return OutlierChannel(" + ".join(s.name for s in sources), " and ".join(r.name for r in convs),
                                  channel, float(factor))
    raise UsageError("no residual Add of two BatchNorms read only by convolutions: --residual needs a MobileNetV2-"
                     "style network")


def outlier_run(run: str | Path, out: str | Path, factor: float = 300.0, trust_code: bool = False,
                **where) -> OutlierChannel:
    """Copy RUN (bundle and training records, no exported artifacts or report) to OUT with an outlier channel
    added to its model.keras, written whole or not at all; the bundle's provenance records the change and the new
    model's sha256.
    TRUST_CODE loads a model.keras that Keras' safe mode refuses (see core.tensorflow)."""
    layout = RunLayout.find(run)
    out = check_new_run(out)
    bundle = Bundle.load(layout.bundle)
    model = load_keras_model(layout.bundle / bundle.keras_model, trust_code, bundle)
    residual = where.pop("residual", False)
    if residual and where.get("batchnorm"):
        raise UsageError("--residual picks the BatchNorms of the first residual Add itself; leave out --batchnorm")
    change = add_residual_outlier(model, factor, where.get("channel", 0)) if residual else add_outlier_channel(
        model, factor, **where)

    def fill(new_bundle: Path) -> None:
        model_path = new_bundle / bundle.keras_model
        model.save(model_path)
        bundle.provenance["model_sha256"] = sha256_file(model_path)
        bundle.provenance["modified"] = change.describe()

    write_derived_run(layout, bundle, out, fill)
    return change
