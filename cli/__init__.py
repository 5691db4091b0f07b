"""edgeship: train, export, verify and benchmark image classifiers for edge devices.

Importing `edgeship` is cheap: the heavy parts (TensorFlow) load only in train/export.
"""

from edgeship.runtime import Classifier, Prediction
from edgeship.runtime.errors import (BackboneError, DatasetError, EdgeshipError, ExportError, GateFailed,
                                     ImageError, ModelLoadError, UsageError)

__version__ = "0.1.0"
__all__ = ["Classifier", "Prediction", "EdgeshipError", "UsageError", "DatasetError", "ImageError",
           "ModelLoadError", "BackboneError", "ExportError", "GateFailed", "__version__"]
