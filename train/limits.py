"""The ranges of training's numbers and its choices, said once: `train.options` checks them when a config is
made, and `edgeship train`'s flags are generated from them (flag, type, range, help; the default is the
option dataclass's own). This module imports nothing heavy, so the CLI stays quick where only the runtime is
installed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeship.runtime.errors import UsageError

LR_SCHEDULES = ("plateau", "cosine", "constant")
STRATEGIES = ("mirrored", "multi-worker")  # tf.distribute, besides the default (one device)


@dataclass(frozen=True)
class Limit:
    """A number's allowed range, said once: the options check it, the CLI's argument types read it."""

    flag: str
    kind: type  # int or float
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    high_open: bool = False
    noun: str = ""  # "a rate": what the message calls the value (default: an integer / a number)
    help: str = ""  # the flag's help text (its default is added from the option dataclass)

    @property
    def expected(self) -> str:
        noun = self.noun or ("an integer" if self.kind is int else "a number")
        if self.high is not None:
            return f"{noun} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"

    def ok(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.kind is int and not float(value).is_integer():
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))

    def check(self, value) -> None:
        """Raise the one-line UsageError the CLI prints; None (not given) passes."""
        if value is not None and not self.ok(value):
            raise UsageError(f"{self.flag} must be {self.expected}, got {value}")


LIMITS: dict[str, Limit] = {
    "image_size": Limit("--image-size", int, 1, help="square input size in px (default: the backbone's)"),
    "epochs": Limit("--epochs", int, 1, help="phase 1 epochs: the head on a frozen backbone, or the whole model"),
    "batch_size": Limit("--batch-size", int, 1, help="images per training step"),
    "learning_rate": Limit("--learning-rate", float, 0, low_open=True, help="phase 1 learning rate"),
    "alpha": Limit("--alpha", float, 0, low_open=True, help="width multiplier for MobileNet backbones"),
    "patience": Limit("--patience", int, 1, help="early-stopping patience in epochs"),
    "seed": Limit("--seed", int, 0, help="seed for splits, augmentation and weight init"),
    "fine_tune_epochs": Limit("--fine-tune-epochs", int, 0,
                              help="phase 2: epochs with the top backbone layers unfrozen (frozen-backbone runs)"),
    "fine_tune_layers": Limit("--fine-tune-layers", int, 0, help="backbone layers phase 2 unfreezes"),
    "fine_tune_learning_rate": Limit("--fine-tune-learning-rate", float, 0, low_open=True,
                                     help="phase 2 learning rate"),
    "dropout": Limit("--dropout", float, 0, high=1, high_open=True, noun="a rate", help="head dropout"),
    "l2": Limit("--l2", float, 0, help="head L2 weight decay"),
    "hidden_units": Limit("--hidden", int, 0, help="units of a hidden Dense layer in the head (0: none)"),
    "unknown_recall": Limit("--unknown-recall", float, 0, low_open=True, high=1,
                            help="calibrate an 'unknown' threshold keeping this validation recall (0: no threshold)"),
}
