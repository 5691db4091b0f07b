"""Backbone registry: name -> constructor, default input size, where weights come from.

Every backbone takes RGB pixels in 0-255 and carries its own normalization as its first layer, so
exported artifacts need no preprocessing beyond resize (see runtime.preprocess).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeship.runtime.errors import BackboneError

from .tfenv import import_keras


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    default_size: int
    weights_source: str  # what `--weights imagenet` means for it
    description: str
    build: Callable[..., object]  # (input_shape, weights, **options) -> keras.Model returning features
    options: dict = field(default_factory=dict)


BACKBONES: dict[str, BackboneSpec] = {}


def register(name: str, default_size: int, weights_source: str, description: str, **options):
    def decorator(build):
        BACKBONES[name] = BackboneSpec(name, default_size, weights_source, description, build, options)
        return build

    return decorator


def _resolve_weights(weights: str | None) -> str | None:
    if weights in (None, "", "none", "random"):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise BackboneError(f"{weights}: weights file not found (use --weights imagenet, none, or a local file)")
    return str(path)


def _keras_application(name: str, factory: str, normalization, shape, weights, **kwargs):
    """Wrap a keras.applications constructor with its normalization in front."""
    _, keras = import_keras()
    try:
        base = getattr(keras.applications, factory)(
            input_shape=shape, include_top=False, weights=weights, pooling="avg", **kwargs
        )
    except Exception as exc:  # keras raises a bare Exception("URL fetch failure ...") offline
        if weights == "imagenet" and "fetch failure" in str(exc).lower():
            raise BackboneError(
                f"{name}: cannot download ImageNet weights (no internet?): {str(exc).splitlines()[0][:160]}; "
                f"use --weights none to train from scratch or --weights FILE for a local weights file"
            ) from exc
        raise BackboneError(f"{name}: cannot build with input {shape} and weights {weights!r}: {exc}") from exc
    inputs = keras.Input(shape, name="pixels")
    return keras.Model(inputs, base(normalization(keras)(inputs)), name=f"{name}_features")


def _scale_to_minus_one_one(keras):
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")


@register("mobilenet_v2", 224, "keras.applications ImageNet", "MobileNetV2; alpha via --alpha", alpha=1.0)
def mobilenet_v2(shape, weights, alpha: float = 1.0):
    return _keras_application("mobilenet_v2", "MobileNetV2", _scale_to_minus_one_one, shape, weights, alpha=alpha)


@register("small_cnn", 64, "none (trained from scratch)", "4-block CNN from scratch, ~100k parameters")
def small_cnn(shape, weights):
    if weights is not None:
        raise BackboneError("small_cnn has no pretrained weights; use --weights none or --init MODEL.keras")
    _, keras = import_keras()
    layers = keras.layers
    inputs = keras.Input(shape, name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    for i, filters in enumerate((32, 64, 96, 128)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)  # few steps per epoch on small sets
        x = layers.ReLU(name=f"relu{i}")(x)
        if i < 3:
            x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, x, name="small_cnn_features")


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError as exc:
        raise BackboneError(f"unknown backbone {name!r}; choose from {', '.join(sorted(BACKBONES))}") from exc


def build_classifier(backbone: str, num_classes: int, image_size: int | None = None,
                     weights: str | None = None, dropout: float = 0.2, **options):
    """Backbone + dropout + softmax head. Input: float32 RGB 0-255, NHWC."""
    _, keras = import_keras()
    spec = get_backbone(backbone)
    size = image_size or spec.default_size
    shape = (size, size, 3)
    kwargs = {k: options[k] for k in spec.options if options.get(k) is not None}
    features = spec.build(shape, _resolve_weights(weights), **kwargs)
    inputs = keras.Input(shape, name="image")
    x = features(inputs)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"edgeship_{backbone}")
