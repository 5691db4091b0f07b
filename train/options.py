"""What `train()` is asked to do, as plain values (MediaPipe Model Maker's model spec / hparams / options split).

`ModelOptions` (which model), `HParams` (how to train it) and `DataOptions` (which data, how to cut it) are
frozen dataclasses that check their own numbers in `__post_init__` against `core.limits.LIMITS`, the one table
of ranges that the CLI's argument types read too. `TrainConfig` holds the three groups; `TrainConfig.from_flat(...)`
(and, as always, `TrainConfig(backbone=..., epochs=...)`) sorts flat keywords into them and refuses unknown
ones. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Sequence

from edgeship.core.dataset import check_class_names
from edgeship.train.limits import LIMITS, LR_SCHEDULES, STRATEGIES  # noqa: F401 - re-exported
from edgeship.core.splits import SplitConfig
from edgeship.runtime.errors import UsageError
from edgeship.runtime.preprocess import RESIZERS

from .augment import AugmentConfig
from .backbones import HUB_PREFIX, HeadConfig, get_backbone

def _check(*pairs) -> None:
    for name, value in pairs:
        LIMITS[name].check(value)


@dataclass(frozen=True)
class ModelOptions:
    """Which model: the backbone, its weights and input size, and the head on top (MediaPipe's model spec)."""

    backbone: str = "small_cnn"
    image_size: int | None = None
    weights: str | None = None  # none, imagenet or a weights file
    init: str | None = None  # a .keras model to continue from
    alpha: float | None = None
    head: HeadConfig = field(default_factory=HeadConfig)
    freeze_backbone: bool | None = None  # None: frozen when pretrained (weights, hub or init)
    resize: str = "bilinear"  # input.resize: the phone's bilinear (no antialiasing); see runtime.preprocess

    def __post_init__(self):
        _check(("image_size", self.image_size), ("alpha", self.alpha), ("dropout", self.head.dropout),
               ("l2", self.head.l2), ("hidden_units", self.head.hidden_units))
        if self.resize not in RESIZERS:
            raise UsageError(f"unknown resize {self.resize!r}; choose from {', '.join(RESIZERS)}")

    @property
    def pretrained(self) -> bool:
        return self.weights not in (None, "", "none", "random")

    def backbone_frozen(self) -> bool:
        """Does phase 1 train the head only? As asked, else when the backbone comes pretrained."""
        if self.freeze_backbone is not None:
            return self.freeze_backbone
        return self.pretrained or bool(self.init) or self.backbone.startswith(HUB_PREFIX)


@dataclass(frozen=True)
class HParams:
    """How to train it (MediaPipe's HParams): epochs, batch, learning rates, schedule, augmentation."""

    epochs: int = 10  # phase 1: the head on a frozen backbone, or the whole model when training from scratch
    fine_tune_epochs: int = 0  # phase 2 (frozen-backbone runs only)
    fine_tune_layers: int = 20  # top backbone layers phase 2 unfreezes (BatchNorm layers stay frozen)
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-5
    cache_features: bool = True  # phase 1 on cached backbone features
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    class_weights: bool = False  # weight the loss by inverse class frequency
    patience: int = 5
    lr_schedule: str = "plateau"
    strategy: str | None = None  # tf.distribute: mirrored | multi-worker

    def __post_init__(self):
        _check(*((name, getattr(self, name)) for name in ("epochs", "batch_size", "learning_rate",
                                                          "fine_tune_learning_rate", "fine_tune_epochs",
                                                          "fine_tune_layers", "patience")))
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"unknown LR schedule {self.lr_schedule!r}; choose from {', '.join(LR_SCHEDULES)}")


@dataclass(frozen=True)
class DataOptions:
    """Which data and how to cut it: classes, splits, and the unknown-class calibration. `splits.seed` also
    seeds the weights and augmentation: one seed makes a run repeatable."""

    classes: Sequence[str] | None = None
    splits: SplitConfig = field(default_factory=SplitConfig)
    unknown_recall: float | None = 0.95  # calibrate an `unknown` threshold keeping this val recall; None: off
    ood_dir: str | None = None  # images of no known class: the report gives their rejection rate

    def __post_init__(self):
        _check(("seed", self.splits.seed), ("unknown_recall", self.unknown_recall))
        if self.classes:
            check_class_names(list(self.classes), "--classes")


_GROUPS = {"model": ModelOptions, "hparams": HParams, "data": DataOptions}
_OWNER = {f.name: group for group, cls in _GROUPS.items() for f in fields(cls)}


@dataclass(init=False)
class TrainConfig:
    """Everything `train()` needs: `model` (ModelOptions), `hparams` (HParams), `data` (DataOptions), plus
    `overwrite` and `show_progress`. Flat keywords land in their group: `TrainConfig(backbone="mobilenet_v2",
    epochs=5)` == `TrainConfig(model=ModelOptions("mobilenet_v2"), hparams=HParams(epochs=5))`. A mistyped
    `config.epoch = 5` raises instead of adding an attribute nobody reads."""

    model: ModelOptions
    hparams: HParams
    data: DataOptions
    overwrite: bool  # replace a finished run in the output directory (edgeship's files only)
    show_progress: bool
    epoch_watchers: tuple  # (phase, epoch, logs) -> True to stop there; not a setting: never part of resume_key

    def __init__(self, model: ModelOptions | None = None, hparams: HParams | None = None,
                 data: DataOptions | None = None, overwrite: bool = False, show_progress: bool = True,
                 epoch_watchers: tuple = (), **flat):
        groups = {"model": model or ModelOptions(), "hparams": hparams or HParams(), "data": data or DataOptions()}
        unknown = sorted(set(flat) - set(_OWNER))
        if unknown:
            raise TypeError(f"TrainConfig got unknown option{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(map(repr, unknown))}")
        for group in groups:
            mine = {k: v for k, v in flat.items() if _OWNER[k] == group}
            if mine:
                groups[group] = replace(groups[group], **mine)  # checked again by the group's __post_init__
        for name, value in (*groups.items(), ("overwrite", overwrite), ("show_progress", show_progress),
                            ("epoch_watchers", tuple(epoch_watchers))):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        """A value, not a bag: make a new config (TrainConfig.from_flat(...) or dataclasses.replace)."""
        raise AttributeError(f"TrainConfig is a value: set {name!r} when making it (TrainConfig.from_flat(...)), "
                             f"or replace a group: dataclasses.replace(config.hparams, ...)")

    @classmethod
    def from_flat(cls, **options) -> TrainConfig:
        """The explicit flat constructor: every option by its own name, unknown names refused."""
        return cls(**options)

    @property
    def seed(self) -> int:
        """The run's one seed (splits, weights, augmentation)."""
        return self.data.splits.seed

    def validate(self) -> None:
        """What no single group can check alone, before any work starts: options this run would ignore."""
        model = self.model
        if not model.backbone.startswith(HUB_PREFIX):
            get_backbone(model.backbone).check_options(model.weights, model.alpha)
        if self.hparams.fine_tune_epochs and not model.backbone_frozen():
            raise UsageError(f"--fine-tune-epochs {self.hparams.fine_tune_epochs} would train nothing: it is phase "
                             f"2 of a frozen pretrained backbone, and this run trains the whole model from the "
                             f"start (weights {model.weights or 'none'}); drop it, or pass --freeze-backbone or "
                             f"--weights imagenet")

    def resume_key(self) -> dict:
        """Settings an interrupted run must share with the command that resumes it."""
        model, hparams, data = self.model, self.hparams, self.data
        key = {"backbone": model.backbone, "image_size": model.image_size, "weights": model.weights,
               "init": model.init, "alpha": model.alpha, "classes": list(data.classes) if data.classes else None,
               "batch_size": hparams.batch_size, "freeze_backbone": model.freeze_backbone,
               "cache_features": hparams.cache_features, "resize": model.resize}
        key["head"], key["splits"] = asdict(model.head), asdict(data.splits)
        return key
