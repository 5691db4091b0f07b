"""`edgeship train DATA --out RUN`: fine-tune a classifier and write its bundle.

The numeric flags are generated from `train.limits.LIMITS` (flag, range, help) with the defaults of the option
dataclasses, and the parsed values go back into those dataclasses by field name: a default is said once."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

from .arguments import class_list, limited, number, positive_int, print_skipped

NAME = "train"
HELP = "train a classifier on class folders or Food-101-style list files"
INTERRUPTED = "; run the same command again to resume from the last finished epoch"


def _option_groups():
    from edgeship.core.splits import SplitConfig
    from edgeship.train.backbones import HeadConfig
    from edgeship.train.options import DataOptions, HParams, ModelOptions

    return {"model": ModelOptions, "head": HeadConfig, "hparams": HParams, "splits": SplitConfig,
            "data": DataOptions}


def _defaults() -> dict:
    """Every option's default, read from its dataclass."""
    found = {}
    for cls in _option_groups().values():
        for f in fields(cls):
            if f.default is not MISSING:
                found.setdefault(f.name, f.default)
    return found


def _with_default(text: str, value) -> str:
    return text if value is None or "default" in text else f"{text} (default {value})"


def add_arguments(p) -> None:
    from edgeship.runtime.preprocess import RESIZERS
    from edgeship.train.limits import LIMITS, LR_SCHEDULES, STRATEGIES

    default = _defaults()
    p.add_argument("data", help="folder with one sub-folder of images per class, or a Food-101-style root (meta/*.txt)")
    p.add_argument("--out", required=True, help="run directory to write (bundle/, training/)")
    p.add_argument("--backbone", default=default["backbone"],
                   help=f"see `edgeship backbones` (default {default['backbone']})")
    for name, limit in LIMITS.items():
        if name != "unknown_recall":  # 0 turns it off: read below
            p.add_argument(limit.flag, dest=name, type=limited(limit), default=default[name],
                           help=_with_default(limit.help, default[name]))
    recall = LIMITS["unknown_recall"]
    p.add_argument(recall.flag, dest="unknown_recall", type=number(float, 0.0, 1.0, what="a fraction in [0, 1]"),
                   default=default["unknown_recall"], help=_with_default(recall.help, default["unknown_recall"]))
    p.add_argument("--weights", default="none", help="none, imagenet (needs internet) or a local weights file")
    p.add_argument("--resize", default=default["resize"], choices=list(RESIZERS),
                   help="how images are resized to the input size everywhere (training, parity, the device): "
                        "bilinear (default) is what phone apps compute (MediaPipe, Android bitmaps, "
                        "tf.image.resize: no antialiasing); bilinear-antialias is PIL's")
    p.add_argument("--classes", type=class_list, help="comma-separated class folders to use, in label order")
    p.add_argument("--init", help="a .keras model to continue training from")
    freeze = p.add_mutually_exclusive_group()
    freeze.add_argument("--freeze-backbone", dest="freeze_backbone", action="store_true", default=None,
                        help="phase 1 trains the head only (default when the backbone is pretrained)")
    freeze.add_argument("--train-backbone", dest="freeze_backbone", action="store_false",
                        help="train the whole model from the start")
    p.add_argument("--no-cache", dest="cache_features", action="store_false",
                   help="phase 1 runs the frozen backbone every epoch instead of on cached features")
    p.add_argument("--augment", default="none",
                   help="training-split augmentation: none; standard (includes left-right flips: wrong for text, "
                        "digits and many product photos); standard-no-flip; or e.g. rotation=0.1,zoom=0.2,contrast=0.1")
    p.add_argument("--preview-augmentation", metavar="PNG", help="write an augmentation preview grid and exit")
    p.add_argument("--max-per-class", type=positive_int, help="use at most N images per class (seeded subset)")
    p.add_argument("--val-fraction", dest="val", type=number(float, 0.0, 1.0, high_open=True, what="a fraction in [0, 1)"),
                   default=default["val"],
                   help=f"share of each class kept apart for validation, where epochs and int8 variants are chosen: "
                        f"--max-drop cannot tell apart less than one image (default {default['val']})")
    p.add_argument("--test-fraction", dest="test", default=default["test"],
                   type=number(float, 0.0, 1.0, low_open=True, high_open=True, what="a fraction in (0, 1)"),
                   help=f"share of each class kept apart for the test split, which only measures (default "
                        f"{default['test']})")
    p.add_argument("--calib-fraction", dest="calib", type=number(float, 0.0, 1.0, high_open=True, what="a fraction in [0, 1)"),
                   default=default["calib"], help="share of the training pool kept apart for int8 calibration "
                                                  f"(default {default['calib']})")
    p.add_argument("--calib-max", type=positive_int, default=default["calib_max"],
                   help=f"at most this many calibration images in all (default {default['calib_max']})")
    p.add_argument("--class-weights", action="store_true", help="weight the loss by inverse class frequency")
    p.add_argument("--lr-schedule", default=default["lr_schedule"], choices=LR_SCHEDULES)
    p.add_argument("--ood-dir", help="images of no known class: the report gives the share rejected as unknown")
    p.add_argument("--strategy", choices=STRATEGIES, help="tf.distribute strategy")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")


def _group(cls, args, **given):
    """CLS made from the parsed flags whose dest is one of its fields (plus GIVEN)."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in given and hasattr(args, f.name)}
    return cls(**values, **given)


def config_from(args):
    """The TrainConfig the parsed flags describe."""
    from edgeship.train import TrainConfig
    from edgeship.train.augment import AugmentConfig

    groups = _option_groups()
    args.unknown_recall = None if args.unknown_recall == 0 else args.unknown_recall
    return TrainConfig(
        model=_group(groups["model"], args, head=_group(groups["head"], args)),
        hparams=_group(groups["hparams"], args, augment=AugmentConfig.parse(args.augment)),
        data=_group(groups["data"], args, splits=_group(groups["splits"], args)),
        overwrite=args.overwrite)


def run(args) -> int:
    from edgeship.train import train

    config = config_from(args)
    if args.preview_augmentation:
        return _preview_augmentation(args, config)
    result = train(args.data, args.out, config)
    print(f"trained {config.model.backbone}: test accuracy {result.test_accuracy:.2%} after {result.epochs_run} epoch(s)")
    for note in result.stopped_early:
        print(note)
    if result.role.workers > 1:
        print(f"{result.role.describe()}: weights sha256 {result.weights_sha256}")
    if not result.role.chief:
        print(f"the chief writes the bundle to {args.out}")
        return 0
    print_skipped(result.bundle.provenance.get("dataset", {}), result.layout.training / "report.md")
    print(f"bundle: {result.layout.bundle}")
    print(f"training report: {result.layout.training / 'report.md'}")
    return 0


def _preview_augmentation(args, config) -> int:
    """Write the augmentation grid for the first images of the dataset, and train nothing."""
    from edgeship.runtime.spec import InputSpec
    from edgeship.train.augment import preview_augmentation
    from edgeship.train.backbones import get_backbone
    from edgeship.train.trainer import scan_dataset

    dataset, _ = scan_dataset(args.data, config.data.classes, config.show_progress)
    size = get_backbone(config.model.backbone).input_size(config.model.image_size)
    first = {}
    for sample in dataset.samples:
        first.setdefault(sample.label, sample.path)
    path = preview_augmentation(list(first.values())[:4], InputSpec(size, size), config.hparams.augment,
                                Path(args.preview_augmentation))
    print(f"augmentation preview ({config.hparams.augment.describe()}): {path}")
    return 0
