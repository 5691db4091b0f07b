"""Backbone registry: name -> constructor, default input size, where weights come from.

Every backbone takes RGB pixels in 0-255 and carries its own normalization inside the graph, so exported
artifacts need no preprocessing beyond resize (see runtime.preprocess). A backbone returns its last
*spatial* feature map (N, h, w, c) where it has one: the classifier pools it, and Grad-CAM reads it.
`hub:HANDLE_OR_DIR` builds a TF-Hub feature-vector backbone (see hub.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgeship.core.keras_layers import leaf_layers  # noqa: F401 - the model's layers, nested models opened up
from edgeship.core.errors import BackboneError
from edgeship.core.tfenv import import_keras

from .backbone_spec import _REGISTRY_VIEW, BACKBONE_LAYER, HUB_PREFIX, BackboneSpec  # noqa: E402,F401 - re-exported

BACKBONES: dict[str, BackboneSpec] = _REGISTRY_VIEW


def register(name: str, default_size: int, weights_source: str, description: str, min_size: int = 32,
             pretrained: bool = True, **options):
    def decorator(build):
        BACKBONES[name] = BackboneSpec(name, default_size, weights_source, description, build, options, min_size,
                                       pretrained)
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
    """A keras.applications constructor (no top, no pooling) with its normalization in front."""
    _, keras = import_keras()
    try:
        base = getattr(keras.applications, factory)(input_shape=shape, include_top=False, weights=weights,
                                                    pooling=None, **kwargs)
    except Exception as exc:  # keras raises a bare Exception("URL fetch failure ...") offline
        if weights == "imagenet" and "fetch failure" in str(exc).lower():
            raise BackboneError(
                f"{name}: cannot download ImageNet weights (no internet?): {str(exc).splitlines()[0][:160]}; "
                f"use --weights none to train from scratch or --weights FILE for a local weights file"
            ) from exc
        raise BackboneError(f"{name}: cannot build with input {shape} and weights {weights!r}: "
                            f"{str(exc).splitlines()[0][:200]}") from exc
    inputs = keras.Input(shape, name="pixels")
    x = normalization(keras)(inputs) if normalization else inputs
    return keras.Model(inputs, base(x), name=BACKBONE_LAYER)


def _scale_to_minus_one_one(keras):
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")


CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _caffe(keras):
    """RGB 0-255 -> BGR minus the ImageNet mean (what keras' resnet50.preprocess_input does), as a frozen
    1x1 convolution: a standard layer, so the model loads with safe_mode and converts to every format."""
    layer = keras.layers.Conv2D(3, 1, trainable=False, name="normalize")
    layer.build((None, None, None, 3))
    kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
    for out_channel, in_channel in enumerate((2, 1, 0)):
        kernel[0, 0, in_channel, out_channel] = 1.0
    layer.set_weights([kernel, -np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)])
    return layer


@register("mobilenet_v2", 224, "keras.applications ImageNet", "MobileNetV2; width via --alpha", alpha=1.0)
def mobilenet_v2(shape, weights, alpha: float = 1.0):
    return _keras_application("mobilenet_v2", "MobileNetV2", _scale_to_minus_one_one, shape, weights, alpha=alpha)


@register("mobilenet_v3_small", 224, "keras.applications ImageNet", "MobileNetV3-Small; width via --alpha", alpha=1.0)
def mobilenet_v3_small(shape, weights, alpha: float = 1.0):
    # include_preprocessing: the application rescales 0-255 to [-1, 1] itself
    return _keras_application("mobilenet_v3_small", "MobileNetV3Small", None, shape, weights, alpha=alpha,
                              include_preprocessing=True)


@register("mobilenet_v3_large", 224, "keras.applications ImageNet", "MobileNetV3-Large; width via --alpha", alpha=1.0)
def mobilenet_v3_large(shape, weights, alpha: float = 1.0):
    return _keras_application("mobilenet_v3_large", "MobileNetV3Large", None, shape, weights, alpha=alpha,
                              include_preprocessing=True)


@register("mobilenet_v3_minimalistic", 224, "keras.applications ImageNet",
          "MobileNetV3-Small minimalistic: no hard-swish or squeeze-excite, the int8/Lite-friendly choice", alpha=1.0)
def mobilenet_v3_minimalistic(shape, weights, alpha: float = 1.0):
    return _keras_application("mobilenet_v3_minimalistic", "MobileNetV3Small", None, shape, weights, alpha=alpha,
                              minimalistic=True, include_preprocessing=True)


@register("efficientnet_b0", 224, "keras.applications ImageNet", "EfficientNet-B0 (swish: check its int8 parity)")
def efficientnet_b0(shape, weights):
    # EfficientNet normalizes 0-255 inputs (Rescaling + Normalization) inside the application
    return _keras_application("efficientnet_b0", "EfficientNetB0", None, shape, weights)


@register("resnet50", 224, "keras.applications ImageNet", "ResNet50 (caffe BGR mean subtraction built in)")
def resnet50(shape, weights):
    return _keras_application("resnet50", "ResNet50", _caffe, shape, weights)


@register("inception_v3", 299, "keras.applications ImageNet", "InceptionV3 (inputs of at least 75 px)", min_size=75)
def inception_v3(shape, weights):
    return _keras_application("inception_v3", "InceptionV3", _scale_to_minus_one_one, shape, weights)


@register("small_cnn", 64, "none (trained from scratch)", "4-block CNN from scratch, ~100k parameters; width via --alpha",
          min_size=16, pretrained=False, alpha=1.0)
def small_cnn(shape, weights, alpha: float = 1.0):
    """32-64-96-128 filters times ALPHA (at least 8 each): the width axis a device-budgeted sweep searches."""
    if weights is not None:
        raise BackboneError("small_cnn has no pretrained weights; use --weights none or --init MODEL.keras")
    _, keras = import_keras()
    layers = keras.layers
    inputs = keras.Input(shape, name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    for i, filters in enumerate((32, 64, 96, 128)):
        x = layers.Conv2D(max(8, round(filters * alpha)), 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)  # few steps per epoch on small sets
        x = layers.ReLU(name=f"relu{i}")(x)
        if i < 3:
            x = layers.MaxPooling2D(name=f"pool{i}")(x)
    return keras.Model(inputs, x, name=BACKBONE_LAYER)


def get_backbone(name: str) -> BackboneSpec:
    if name.startswith(HUB_PREFIX):
        from .hub import hub_backbone

        return hub_backbone(name[len(HUB_PREFIX):])
    try:
        return BACKBONES[name]
    except KeyError as exc:
        raise BackboneError(f"unknown backbone {name!r}; choose from {', '.join(sorted(BACKBONES))} "
                            f"or hub:HANDLE_OR_DIR") from exc


@dataclass(frozen=True)
class HeadConfig:
    """The classification head on pooled backbone features (MediaPipe Model Maker's HParams idea)."""

    dropout: float = 0.2
    l2: float = 0.0
    hidden_units: int = 0  # 0: Dense straight to the classes

    def build(self, keras, features, num_outputs: int, activation: str):
        x = features
        regularizer = keras.regularizers.L2(self.l2) if self.l2 else None
        if self.hidden_units:
            x = keras.layers.Dense(self.hidden_units, activation="relu", kernel_regularizer=regularizer,
                                   name="hidden")(x)
        if self.dropout:
            x = keras.layers.Dropout(self.dropout, name="dropout")(x)
        return keras.layers.Dense(num_outputs, activation=activation, kernel_regularizer=regularizer,
                                  name="probabilities")(x)


def output_units(num_classes: int) -> tuple[int, str]:
    """Binary tasks get one sigmoid output (probability of the second class); others softmax."""
    return (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")


def build_backbone(backbone: str, image_size: int | None = None, weights: str | None = None, **options):
    """The backbone alone: 0-255 RGB in, a spatial feature map (or a feature vector for hub models) out."""
    spec = get_backbone(backbone)
    size = spec.input_size(image_size)
    kwargs = {k: options[k] for k in spec.options if options.get(k) is not None}
    return spec.build((size, size, 3), _resolve_weights(weights), **kwargs)


HEAD_LAYERS = ("hidden", "dropout", "probabilities")


def backbone_output(model):
    """The backbone's output as a tensor of the classifier's own graph (a nested model's `.output` is its
    inner graph's, which keras.Model(model.inputs, ...) cannot use): the input of the layer after it."""
    names = {layer.name for layer in model.layers}
    follower = next((name for name in ("pool", *HEAD_LAYERS) if name in names), None)
    if follower is None:
        raise BackboneError(f"{model.name}: not an edgeship classifier (no pool or head layers)")
    return model.get_layer(follower).input


def pooled_output(model):
    """The pooled feature vector the head reads, as a tensor of the classifier's graph."""
    head = next(name for name in HEAD_LAYERS if name in {layer.name for layer in model.layers})
    return model.get_layer(head).input


def pool_features(keras, features):
    """Spatial maps are average-pooled to a vector; feature vectors pass through."""
    return keras.layers.GlobalAveragePooling2D(name="pool")(features) if len(features.shape) == 4 else features


def build_classifier(backbone: str, num_classes: int, image_size: int | None = None,
                     weights: str | None = None, dropout: float = 0.2, head: HeadConfig | None = None, **options):
    """image (float32 RGB 0-255, NHWC) -> backbone -> pool -> head -> probabilities."""
    _, keras = import_keras()
    head = head or HeadConfig(dropout=dropout)
    features_model = build_backbone(backbone, image_size, weights, **options)
    inputs = keras.Input(features_model.input_shape[1:], name="image")
    pooled = pool_features(keras, features_model(inputs))
    units, activation = output_units(num_classes)
    outputs = head.build(keras, pooled, units, activation)
    name = "hub" if backbone.startswith(HUB_PREFIX) else backbone  # Keras names may not contain "/"
    return keras.Model(inputs, outputs, name=f"edgeship_{name}")
