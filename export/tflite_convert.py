"""Keras -> TFLite converters, one per precision. Each takes a ConversionJob and returns bytes."""

from __future__ import annotations

import warnings

import numpy as np
from edgeship.core.tfenv import import_keras


def _converter(job):
    """A converter from the job's SavedModel (exported once per export run)."""
    tf, _ = import_keras()
    return tf, tf.lite.TFLiteConverter.from_saved_model(job.saved_model())


def float32(job) -> bytes:
    _, converter = _converter(job)
    return converter.convert()


def dynamic_range(job) -> bytes:
    tf, converter = _converter(job)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def float16(job) -> bytes:
    tf, converter = _converter(job)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def full_int8(job) -> bytes:
    """Full-integer model. Default uint8 IO: with the Rescaling layer in front, input scale is 1.0 and
    zero-point 0, so raw camera pixels feed it directly. int8 IO (zero-point -128) or float IO on request."""
    tf, converter = _converter(job)
    calibration = np.asarray(job.calibration, dtype=np.float32)

    def representative_dataset():
        for image in calibration:
            yield [image[None]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_type = {"uint8": tf.uint8, "int8": tf.int8, "float": tf.float32}[getattr(job, "int8_io", "uint8")]
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    with warnings.catch_warnings():  # TF warns about input statistics it does not need here
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()
