"""Quantization-aware training for Keras 3, the building blocks (issue #32, first part): a trained float model
rewritten so that every tensor the int8 graph keeps is fake-quantized, with BatchNorm folded into the convolution
before it. TensorFlow Model Optimization needs Keras 2; Keras 3's `model.quantize` is post-training. What makes
this work is `keras.quantizers.fake_quant_with_min_max_vars`, which on the TensorFlow backend is TensorFlow's own
FakeQuant op: the TFLite converter reads its ranges and writes a full-integer model from them, with no
representative dataset to re-calibrate (and undo) what training learned.

- weights: per output channel, symmetric, narrow range ([-127, 127]), as TFLite's int8 kernels expect;
- activations: per tensor, after every op the int8 graph keeps separate (a convolution's BatchNorm and ReLU/ReLU6
  fuse into it, so the range sits after the activation), ranges seeded from calibration images and then tracked by
  a moving average while fine-tuning.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from edgeship.core.tfenv import import_keras

_, keras = import_keras()
ops = keras.ops

MOMENTUM = 0.99  # the moving average of each activation range while fine-tuning (TF-MOT's default is 0.999)
FOLDS_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")  # layers a following BatchNormalization folds into
FUSED_ACTIVATIONS = {"relu": (0.0, None), "relu6": (0.0, 6.0), "linear": (None, None)}
PASS_THROUGH = ("Dropout", "Identity", "SpatialDropout2D", "GaussianNoise", "Flatten", "Reshape")


@keras.saving.register_keras_serializable(package="edgeship")
class FakeQuant(keras.layers.Layer):
    """One activation tensor's int8 range. `calibrating`: widen the range to every batch seen (the seed);
    training: follow each batch's min/max by a moving average; otherwise: the stored range."""

    def __init__(self, low: float = -6.0, high: float = 6.0, **kwargs):
        super().__init__(**kwargs)
        self.initial, self.calibrating = (float(low), float(high)), False

    def build(self, shape):
        self.low = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.initial[0]),
                                   trainable=False, name="low")
        self.high = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.initial[1]),
                                    trainable=False, name="high")
        self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen")

    def call(self, x, training=None):
        if self.calibrating or training:
            low = ops.minimum(ops.min(x), 0.0)  # the range holds 0: zero padding is exact in int8
            high = ops.maximum(ops.max(x), 0.0)
            first = ops.equal(self.seen, 0.0)
            if self.calibrating:
                low = ops.where(first, low, ops.minimum(self.low, low))
                high = ops.where(first, high, ops.maximum(self.high, high))
            else:
                low = ops.where(first, low, MOMENTUM * self.low + (1 - MOMENTUM) * low)
                high = ops.where(first, high, MOMENTUM * self.high + (1 - MOMENTUM) * high)
            self.low.assign(low)
            self.high.assign(high)
            self.seen.assign(1.0)
        return keras.quantizers.fake_quant_with_min_max_vars(x, self.low, self.high, num_bits=8)

    def get_config(self):
        return {**super().get_config(), "low": self.initial[0], "high": self.initial[1]}


@keras.saving.register_keras_serializable(package="edgeship")
class FoldedConv(keras.layers.Layer):
    """A Conv2D, DepthwiseConv2D or Dense with its BatchNorm folded in and its activation fused, its kernel
    fake-quantized per output channel (symmetric, narrow range) on every call."""

    def __init__(self, kind: str, config: dict, activation: str = "linear", **kwargs):
        super().__init__(**kwargs)
        self.kind, self.inner_config, self.activation = kind, dict(config), activation
        self.inner = getattr(keras.layers, kind).from_config({**config, "activation": "linear", "use_bias": True,
                                                              "name": f"{self.name}_inner"})

    def build(self, shape):
        self.inner.build(shape)

    def _kernel(self):
        return self.inner.depthwise_kernel if self.kind == "DepthwiseConv2D" else self.inner.kernel

    def call(self, x):
        kernel = self._kernel()
        if self.kind == "Dense":  # per tensor, as TF-MOT does: the converter transposes a Dense kernel
            channel_axes, axis = None, None  # and refuses a per-channel axis through the transpose
        elif self.kind == "DepthwiseConv2D":  # (kh, kw, in, multiplier 1): one range per input channel
            channel_axes, axis = (0, 1, 3), 2
        else:
            channel_axes, axis = (0, 1, 2), -1
        bound = ops.maximum(ops.max(ops.abs(kernel), axis=channel_axes), 1e-8)
        quantized = keras.quantizers.fake_quant_with_min_max_vars(kernel, -bound, bound, num_bits=8,
                                                                  narrow_range=True, axis=axis)
        y = self._apply(x, quantized) + self.inner.bias
        low, high = FUSED_ACTIVATIONS[self.activation]
        return y if low is None else (ops.relu(y) if high is None else ops.relu6(y))

    def _apply(self, x, kernel):
        c = self.inner_config
        if self.kind == "Dense":
            return ops.matmul(x, kernel)
        if self.kind == "Conv2D":
            return ops.conv(x, kernel, strides=c.get("strides", 1), padding=c.get("padding", "valid"),
                            dilation_rate=c.get("dilation_rate", 1))
        return ops.depthwise_conv(x, kernel, strides=c.get("strides", 1), padding=c.get("padding", "valid"),
                                  dilation_rate=c.get("dilation_rate", 1))

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "config": self.inner_config,
                "activation": self.activation}


def _consumers(model) -> dict[str, list]:
    """Layer name -> the layers that take its output."""
    found: dict[str, list] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                source = tensor._keras_history.operation
                found.setdefault(source.name, []).append(layer)
    return found


def _activation_of(layer) -> str | None:
    """The fusible activation LAYER is (ReLU, ReLU6, Activation('relu')), else None."""
    kind = type(layer).__name__
    if kind == "ReLU":
        config = layer.get_config()
        if config.get("negative_slope", 0) == 0 and config.get("threshold", 0) == 0:
            return "relu6" if config.get("max_value") == 6 else ("relu" if config.get("max_value") is None else None)
    if kind == "Activation" and layer.get_config().get("activation") in ("relu", "relu6"):
        return layer.get_config()["activation"]
    return None


def _out_channels(layer, kernel: np.ndarray) -> int:
    return kernel.shape[2] * kernel.shape[3] if type(layer).__name__ == "DepthwiseConv2D" else kernel.shape[-1]


def _fold(layer, bn) -> tuple[np.ndarray, np.ndarray]:
    """LAYER's kernel and bias with BN (or nothing) folded in: w * gamma / sqrt(var + eps) per output channel."""
    depthwise = type(layer).__name__ == "DepthwiseConv2D"
    kernel = np.asarray(layer.depthwise_kernel if depthwise else layer.kernel, np.float32)
    bias = (np.asarray(layer.bias, np.float32) if getattr(layer, "use_bias", False)
            else np.zeros(_out_channels(layer, kernel), np.float32))
    if bn is None:
        return kernel, bias
    gamma = np.asarray(bn.gamma) if bn.scale else 1.0
    beta = np.asarray(bn.beta) if bn.center else 0.0
    scale = gamma / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
    folded = kernel * (scale.reshape(1, 1, -1, 1) if depthwise else scale)
    return folded.astype(np.float32), (beta + (bias - np.asarray(bn.moving_mean)) * scale).astype(np.float32)


def _sole(consumers: dict, layer):
    mine = consumers.get(layer.name, [])
    return mine[0] if len(mine) == 1 else None


def _chains(model, consumers: dict) -> tuple[dict, set]:
    """Which layers fold: {conv name: (bn or None, fused activation, the chain's last layer)} and the names of the
    BatchNorm and activation layers folded away."""
    chains, folded_away = {}, set()
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in FOLDS_INTO:
            continue
        own = layer.get_config().get("activation", "linear")
        bn, last, activation = None, layer, own if own in FUSED_ACTIVATIONS else "linear"
        follower = _sole(consumers, layer)
        if own == "linear" and follower is not None and type(follower).__name__ == "BatchNormalization":
            bn, last = follower, follower
            follower = _sole(consumers, follower)
        if activation == "linear" and follower is not None and _activation_of(follower):
            activation, last = _activation_of(follower), follower
        chains[layer.name] = (bn, activation, last)
        folded_away |= {x.name for x in (bn, last) if x is not None and x is not layer}
    return chains, folded_away


def _rebuild(model, inputs, made: list):
    """MODEL's graph called on INPUTS with folded convolutions and fake quantization; nested functional models are
    rebuilt in place. MADE collects (new FoldedConv, kernel, bias) to set once built."""
    consumers = _consumers(model)
    chains, folded_away = _chains(model, consumers)
    tensors = {id(t): x for t, x in zip(model.inputs, inputs if isinstance(inputs, list) else [inputs])}
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        node = layer._inbound_nodes[0]  # each layer is called once in edgeship's graphs
        args = [tensors[id(t)] for t in node.input_tensors]
        x = args[0] if len(args) == 1 else args
        if isinstance(layer, keras.Model):
            y = _rebuild(layer, x, made)
        elif layer.name in folded_away:
            y = x
        elif layer.name in chains:
            y = _folded(layer, chains[layer.name], x, made)
        else:
            y = layer(x)
        last = chains[layer.name][2] if layer.name in chains else layer
        if not isinstance(layer, keras.Model) and layer.name not in folded_away and _quantize_after(last):
            y = FakeQuant(name=f"fq_{last.name}")(y)
        tensors[id(node.output_tensors[0])] = y
    outputs = [tensors[id(t)] for t in model.outputs]
    return outputs[0] if len(outputs) == 1 else outputs


def _folded(layer, chain, x, made: list):
    bn, activation, _ = chain
    config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable", "dtype")}
    own = config.get("activation", "linear")
    new = FoldedConv(type(layer).__name__, config, activation, name=f"{layer.name}_folded")
    y = new(x)
    made.append((new, *_fold(layer, bn)))
    if own not in FUSED_ACTIVATIONS:  # a head's softmax: its int8 output range is fixed by TFLite, not learned
        y = FakeQuant(name=f"fq_{layer.name}_logits")(y)
        y = keras.layers.Activation(own, name=f"{layer.name}_{own}")(y)
    return y


def _quantize_after(layer) -> bool:
    kind = type(layer).__name__
    if kind in PASS_THROUGH or kind == "Softmax":
        return False
    activation = layer.get_config().get("activation") if kind in FOLDS_INTO else None
    return activation in (None, *FUSED_ACTIVATIONS)


def quantize_model(model, input_range: tuple[float, float] = (0.0, 255.0)):
    """A fake-quantized copy of the trained float MODEL (which is left as it is): BatchNorm folded, every kept
    tensor with an int8 range (seed them with `calibrate`). INPUT_RANGE: the pixels the model takes."""
    inputs = keras.Input(model.input_shape[1:], name=model.inputs[0].name.split(":")[0] or "image")
    made: list = []
    x = FakeQuant(*input_range, name="fq_input")(inputs)
    outputs = _rebuild(model, x, made)
    for layer, kernel, bias in made:
        target = layer.inner.depthwise_kernel if layer.kind == "DepthwiseConv2D" else layer.inner.kernel
        target.assign(kernel)
        layer.inner.bias.assign(bias)
    qat = keras.Model(inputs, outputs, name=f"{model.name}_qat")
    qat.get_layer("fq_input").seen.assign(1.0)  # the input range is the pixels', not observed
    return qat


def fake_quant_layers(model) -> list[FakeQuant]:
    return [layer for layer in model.layers if isinstance(layer, FakeQuant)]


def calibrate(model, batches: Iterable[np.ndarray]) -> None:
    """Seed every activation range with the min/max the float graph gives on BATCHES (calibration images)."""
    layers = [q for q in fake_quant_layers(model) if q.name != "fq_input"]
    for layer in layers:
        layer.calibrating = True
    try:
        for batch in batches:
            model(batch, training=False)
    finally:
        for layer in layers:
            layer.calibrating = False


def convert_qat(model, io: str = "uint8") -> bytes:
    """The full-integer .tflite of a fake-quantized MODEL from its own ranges (no representative dataset)."""
    import tempfile

    tf, _ = import_keras()
    with tempfile.TemporaryDirectory(prefix="edgeship-qat-") as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.inference_input_type = converter.inference_output_type = {"uint8": tf.uint8, "int8": tf.int8,
                                                                            "float": tf.float32}[io]
        return converter.convert()


def fine_tune(model, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], epochs: int = 3,
              learning_rate: float = 1e-4, batch_size: int = 32, seed: int = 0) -> list[float]:
    """Fine-tune the fake-quantized MODEL briefly at a low learning rate (the ranges follow by moving average) and
    keep the epoch with the best validation accuracy (epoch 0: the seeded model as it is). The test split is not
    an argument: nothing here can read it. The validation accuracy per epoch, from epoch 0."""
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    scores = [_accuracy(model, val)]
    best, kept = scores[0], model.get_weights()
    for _ in range(epochs):
        model.fit(train[0], train[1], batch_size=batch_size, epochs=1, verbose=0, shuffle=True)
        scores.append(_accuracy(model, val))
        if scores[-1] > best:
            best, kept = scores[-1], model.get_weights()
    model.set_weights(kept)
    return scores


def _accuracy(model, data: tuple[np.ndarray, np.ndarray]) -> float:
    return float(np.mean(model.predict(data[0], verbose=0).argmax(axis=1) == data[1]))
