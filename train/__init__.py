"""edgeship.train: datasets, splits, backbones and the training loop. Imports TensorFlow lazily."""

from edgeship.core.dataset import ScannedDataset, scan_folder
from edgeship.core.splits import SplitConfig, SplitManifest, make_splits

from .augment import AugmentConfig
from .backbones import HeadConfig
from .digits import write_digits_dataset
from .options import DataOptions, HParams, ModelOptions, TrainConfig
from .trainer import TrainResult, train

__all__ = ["scan_folder", "ScannedDataset", "write_digits_dataset", "SplitConfig", "SplitManifest",
           "make_splits", "TrainConfig", "ModelOptions", "HParams", "DataOptions", "TrainResult", "train", "AugmentConfig", "HeadConfig"]
