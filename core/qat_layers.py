"""The two layers a quantization-aware model is made of, registered with Keras so that a fake-quantized `.keras`
file loads in safe mode (no code from the file): `FakeQuant`, one activation tensor's learned int8 range, and
`FoldedConv`, a convolution or Dense with its BatchNorm folded in and its kernel fake-quantized per channel.
`core.qat` builds models from them; `core.tensorflow.load_keras_model` imports this module first."""

from __future__ import annotations

from edgeship.core.tfenv import import_keras

_, keras = import_keras()
ops = keras.ops

MOMENTUM = 0.99  # the moving average of each activation range while fine-tuning (TF-MOT's default is 0.999)
FUSED_ACTIVATIONS = {"relu": (0.0, None), "relu6": (0.0, 6.0), "linear": (None, None)}


@keras.saving.register_keras_serializable(package="edgeship")
class FakeQuant(keras.layers.Layer):
    """One activation tensor's int8 range. `calibrating`: widen the range to every batch seen (the seed);
    training: follow each batch's min/max by a moving average; otherwise: the stored range. A `fixed` range is
    known in advance (the pixels', their normalization's) and never moves."""

    def __init__(self, low: float = -6.0, high: float = 6.0, fixed: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.initial, self.calibrating, self.fixed = (float(low), float(high)), False, bool(fixed)

    def build(self, shape):
        self.low = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.initial[0]),
                                   trainable=False, name="low")
        self.high = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.initial[1]),
                                    trainable=False, name="high")
        self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen")

    def call(self, x, training=None):
        if (self.calibrating or training) and not self.fixed:
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

    def compute_output_shape(self, shape):  # Keras marks `x * (1 / 6)` sparse; traced, this op would refuse it
        return shape

    def get_config(self):
        return {**super().get_config(), "low": self.initial[0], "high": self.initial[1], "fixed": self.fixed}


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

    def call(self, x):
        kernel = self.inner.kernel
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
        if self.kind == "Dense":
            return ops.matmul(x, kernel)
        c = self.inner_config  # a reloaded config holds lists (JSON) where ops want tuples
        window = {"strides": _tuple(c.get("strides", 1)), "padding": c.get("padding", "valid"),
                  "dilation_rate": _tuple(c.get("dilation_rate", 1))}
        return (ops.conv if self.kind == "Conv2D" else ops.depthwise_conv)(x, kernel, **window)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "config": self.inner_config,
                "activation": self.activation}


def _tuple(value):
    return value if isinstance(value, (int, str)) else tuple(value)


def is_fake_quantized(model) -> bool:
    """Whether MODEL was made by `core.qat.quantize_model` (its int8 ranges are learned, not calibrated)."""
    return any(isinstance(layer, FakeQuant) for layer in model.layers)
