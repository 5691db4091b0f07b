"""edgeship.runtime: the on-device classifier. Imports no TensorFlow and nothing else of edgeship."""

from .classifier import Classifier, Prediction, available_backends
from .errors import EdgeshipError, ImageError, IntegrityError, ModelLoadError, UsageError
from .preprocess import IMAGE_SUFFIXES, load_image, prepare_batch, prepare_image
from .spec import Bundle, InputSpec, ModelInfo

__all__ = [
    "Classifier", "Prediction", "available_backends", "load_image", "prepare_image", "prepare_batch",
    "IMAGE_SUFFIXES", "Bundle", "InputSpec", "ModelInfo", "EdgeshipError", "UsageError", "ImageError",
    "ModelLoadError", "IntegrityError",
]
