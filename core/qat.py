"""Quantization-aware training for Keras 3: a trained float model
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

import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from edgeship.core.qat_layers import FUSED_ACTIVATIONS, FakeQuant, FoldedConv
from edgeship.core.tfenv import import_keras
from edgeship.runtime.progress import progress

_, keras = import_keras()
ops = keras.ops

QAT_PROVENANCE = "quantization_aware"  # the bundle provenance key `edgeship qat` writes and export reads
QAT_MODEL = "model_qat.keras"  # the fake-quantized model beside a QAT run's float model.keras
TRAIN_MAX = 2000  # training images held in memory for a fine-tune, every class evenly
# Adam's learning rate at the start of a fine-tune (it decays to zero along a cosine) and its epochs; the epoch best
# on validation is kept. On the pretrained MobileNetV2 with a ×30 residual outlier (docs/guides/int8.md), a constant
# 5e-4 peaked at validation −1.0 pp in 8 epochs, a constant 2e-4 swung by 2 pp from epoch to epoch, and 2e-4 with
# the cosine settled at +0.17 pp; 1e-4 and below recovered too little on the from-scratch digits models.
LEARNING_RATE = 2e-4
EPOCHS = 5
FOLDS_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")  # layers a following BatchNormalization folds into
# ops whose int8 output must keep its input's scale in TFLite (PAD, MAX_POOL_2D, RESHAPE): a range of their own would
# differ from the one the converter uses by rounding, a systematic one-step error in every value after them
PASS_THROUGH = ("Dropout", "Identity", "SpatialDropout2D", "GaussianNoise", "Flatten", "Reshape", "ZeroPadding2D",
                "MaxPooling2D", "Cropping2D")


def _nodes(model) -> list:
    """MODEL's own call nodes in the order Keras runs them (deepest first), inputs left out."""
    ordered = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        ordered += [n for n in model._nodes_by_depth[depth] if n.operation is not None and not n.is_input]
    return ordered


def _consumers(model) -> dict[str, list]:
    """Operation name -> the operations (layers and Keras ops such as `x + 3.0`) that take its output."""
    found: dict[str, list] = {}
    for node in _nodes(model):
        for tensor in node.input_tensors:
            found.setdefault(tensor._keras_history.operation.name, []).append(node.operation)
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
    kernel = np.asarray(layer.kernel, np.float32)
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
    for layer in (node.operation for node in _nodes(model)):
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


def _rebuild(model, inputs, made: list, pixels: tuple[float, float] = (0.0, 255.0)):
    """MODEL's graph called on INPUTS with folded convolutions and fake quantization, Keras ops (MobileNetV3's
    `relu6(x + 3) / 6`) replayed with their constants; nested functional models are rebuilt in place. MADE collects
    (new FoldedConv, kernel, bias) to set once built."""
    consumers = _consumers(model)
    chains, folded_away = _chains(model, consumers)
    tensors = {id(t): x for t, x in zip(model.inputs, inputs if isinstance(inputs, list) else [inputs])}
    for node in _nodes(model):
        layer = node.operation
        args, kwargs = node.arguments.fill_in(tensors)
        if isinstance(layer, keras.Model):
            y = _rebuild(layer, args[0], made, pixels)
        elif layer.name in folded_away:
            y = args[0]
        elif layer.name in chains:
            y = _folded(layer, chains[layer.name], args[0], made)
        elif type(layer).__name__ == "Rescaling" and np.any(np.asarray(layer.offset) != 0):
            y = _rescaling(layer, args[0], pixels)
        else:
            y = layer(*args, **kwargs)
        last = chains[layer.name][2] if layer.name in chains else layer
        ranged = isinstance(y, keras.KerasTensor) and isinstance(y._keras_history.operation, FakeQuant)
        if not (isinstance(layer, keras.Model) or ranged) and layer.name not in folded_away and _quantize_after(last):
            y = FakeQuant(name=f"fq_{last.name}")(y)
        tensors[id(node.outputs[0])] = y
    outputs = [tensors[id(t)] for t in model.outputs]
    return outputs[0] if len(outputs) == 1 else outputs


def _rescaling(layer, x, pixels: tuple[float, float]):
    """`x * scale + offset` as two ops with a range between them: TFLite runs them as MUL and ADD, and without
    that range the converter leaves both in float (a DEQUANTIZE at the model's input). Both ranges are fixed from
    the PIXELS range. The sum's is widened by a quarter step: MobileNet's `x / 127.5 - 1` puts every 0-255 pixel
    exactly half-way between two int8 levels of [-1, 1], where TensorFlow's fake quantization and TFLite's kernels
    round differently (the QAT file then disagreed with its Keras model on 1.4 % of test images, 0.6 % without)."""
    config = {k: v for k, v in layer.get_config().items() if k not in ("name", "scale", "offset")}
    scale, offset = (np.asarray(v, np.float64) for v in (layer.scale, layer.offset))
    # named layers, not ops: a Keras op's automatic name may already be taken in the model
    scaled = keras.layers.Rescaling(layer.scale, offset=0.0, name=f"{layer.name}_scale", **config)(x)
    add_offset = keras.layers.Rescaling(1.0, offset=layer.offset, name=f"{layer.name}_offset", **config)
    if scale.size > 1 or offset.size > 1:  # per channel: ranges from calibration (the caller adds the sum's)
        return add_offset(FakeQuant(name=f"fq_{layer.name}_scaled")(scaled))
    low, high = sorted(float(v) * float(scale) for v in pixels)
    step = (high - low) / 255.0
    y = add_offset(FakeQuant(low, high, fixed=True, name=f"fq_{layer.name}_scaled")(scaled))
    return FakeQuant(low + float(offset) - step / 4, high + float(offset) + step / 4, fixed=True,
                     name=f"fq_{layer.name}")(y)


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
        if own != "softmax":  # EfficientNet's squeeze-excite: swish and sigmoid inside the convolution
            y = FakeQuant(name=f"fq_{layer.name}_{own}")(y)
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
    x = FakeQuant(*input_range, fixed=True, name="fq_input")(inputs)  # the pixels' range, never observed
    outputs = _rebuild(model, x, made, input_range)
    for layer, kernel, bias in made:
        layer.inner.kernel.assign(kernel)
        layer.inner.bias.assign(bias)
    return keras.Model(inputs, outputs, name=f"{model.name}_qat")


def fake_quant_layers(model) -> list[FakeQuant]:
    return [layer for layer in model.layers if isinstance(layer, FakeQuant)]


def calibrate(model, batches: Iterable[np.ndarray]) -> None:
    """Seed every activation range with the min/max the float graph gives on BATCHES (calibration images)."""
    layers = [q for q in fake_quant_layers(model) if not q.fixed]
    for layer in layers:
        layer.calibrating = True
    try:
        for batch in batches:
            model(batch, training=False)
    finally:
        for layer in layers:
            layer.calibrating = False


def fine_tune(model, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
              epochs: int = EPOCHS, learning_rate: float = LEARNING_RATE, batch_size: int = 32, seed: int = 0,
              show_progress: bool = False) -> list[float]:
    """Fine-tune the fake-quantized MODEL briefly at a low learning rate (the ranges follow by moving average) and
    keep the epoch with the best validation accuracy (epoch 0: the seeded model as it is). The rate decays to zero
    along a cosine so the last epochs settle instead of swinging by a point from one epoch to the next. The test
    split is not an argument: nothing here can read it. The validation accuracy per epoch, from epoch 0."""
    keras.utils.set_random_seed(seed)
    steps = max(1, epochs * -(-len(train[1]) // batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    scores = [_accuracy(model, val)]
    best, kept = scores[0], model.get_weights()
    for _ in progress(range(epochs), total=epochs, desc="QAT fine-tune", enabled=show_progress, unit="epoch"):
        model.fit(train[0], train[1], batch_size=batch_size, epochs=1, verbose=0, shuffle=True)
        scores.append(_accuracy(model, val))
        if scores[-1] > best:
            best, kept = scores[-1], model.get_weights()
    model.set_weights(kept)
    return scores


def _accuracy(model, data: tuple[np.ndarray, np.ndarray]) -> float:
    return float(np.mean(model.predict(data[0], verbose=0).argmax(axis=1) == data[1]))


@dataclass
class QatOutcome:
    """A fake-quantized model fine-tuned from a float one, and what choosing it read: validation only."""

    model: object
    val_accuracy_by_epoch: list[float]  # epoch 0: the calibrated model before any fine-tuning
    chosen_epoch: int
    epochs: int
    learning_rate: float
    calibration_images: int
    train_images: int
    seconds: float
    val_top: np.ndarray | None = None  # the fine-tuned model's top-1 per validation image, once asked for

    def to_json(self) -> dict:
        return {"epochs": self.epochs, "chosen_epoch": self.chosen_epoch, "learning_rate": self.learning_rate,
                "val_accuracy_by_epoch": [round(a, 6) for a in self.val_accuracy_by_epoch],
                "calibration_images": self.calibration_images, "train_images": self.train_images,
                "seconds": round(self.seconds, 2)}


def quantization_aware(model, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                       calibration: np.ndarray, epochs: int = EPOCHS, learning_rate: float = LEARNING_RATE,
                       input_range: tuple[float, float] = (0.0, 255.0), batch_size: int = 32,
                       show_progress: bool = False) -> QatOutcome:
    """MODEL (left as it is) rewritten with fake quantization, its ranges seeded from CALIBRATION and fine-tuned
    on TRAIN for EPOCHS, keeping the epoch that did best on VAL. The test split is not an argument."""
    started = time.perf_counter()
    quantized = quantize_model(model, input_range)
    calibrate(quantized, (calibration[i:i + batch_size] for i in range(0, len(calibration), batch_size)))
    scores = fine_tune(quantized, train, val, epochs, learning_rate, batch_size, show_progress=show_progress)
    return QatOutcome(quantized, scores, int(np.argmax(scores)), epochs, learning_rate, int(len(calibration)),
                      int(len(train[1])), time.perf_counter() - started)
