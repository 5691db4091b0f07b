"""edgeship.train: datasets, splits, backbones and the training loop. Imports TensorFlow lazily."""

from .augment import AugmentConfig
from .backbones import HeadConfig
from .dataset import ScannedDataset, scan_folder
from .digits import write_digits_dataset
from .splits import SplitConfig, SplitManifest, make_splits
from .trainer import TrainConfig, TrainResult, train

__all__ = ["scan_folder", "ScannedDataset", "write_digits_dataset", "SplitConfig", "SplitManifest",
           "make_splits", "TrainConfig", "TrainResult", "train", "AugmentConfig", "HeadConfig"]
