"""edgeship: train, export, verify and benchmark image classifiers for edge devices.

Importing `edgeship` is cheap: the heavy parts (TensorFlow) load only in train/export.
"""

from edgeship.core.errors import BackboneError, DatasetError, ExportError, RunBusyError
from edgeship.runtime import Classifier, Prediction
from edgeship.runtime.errors import EdgeshipError, ImageError, IntegrityError, ModelLoadError, UsageError

__version__ = "0.1.0"
__all__ = ["Classifier", "Prediction", "EdgeshipError", "UsageError", "DatasetError", "ImageError",
           "ModelLoadError", "BackboneError", "ExportError", "IntegrityError", "RunBusyError", "__version__"]
