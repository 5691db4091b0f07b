"""Keras -> TFLite converters, one per precision. Each takes a ConversionJob and returns bytes."""

from __future__ import annotations

import warnings

import numpy as np

from edgeship.core.formats import export_format
from edgeship.core.tfenv import import_keras

from .embed import embed_tflite
from .readiness import tflite_readiness

TFLITE = dict(backend="tflite", embedder=embed_tflite, readiness=tflite_readiness)


def _converter(job):
    """A converter from the job's SavedModel (exported once per export run)."""
    tf, _ = import_keras()
    return tf, tf.lite.TFLiteConverter.from_saved_model(job.saved_model())


@export_format("tflite", "model_float32.tflite", "float32", description="TFLite, float32 weights and activations",
               **TFLITE)
def float32(job) -> bytes:
    _, converter = _converter(job)
    return converter.convert()


# Dynamic-range formats are named choices, not defaults: on a real ImageNet MobileNetV2 (224 px, 1 thread)
# tflite_dynamic ran no faster than float32 (8.20 vs 8.15 ms; XNNPACK does not take it) and onnx_dynamic was
# 2.8x slower and lost 25.93 pp. They help where weights dominate: large Dense layers, size-bound downloads.
@export_format("tflite_dynamic", "model_dynamic.tflite", "dynamic-int8", default=False,
               description="TFLite dynamic-range: int8 weights, float activations (4x smaller; no faster for CNNs on "
                           "XNNPACK)", **TFLITE)
def dynamic_range(job) -> bytes:
    tf, converter = _converter(job)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


@export_format("tflite_fp16", "model_float16.tflite", "float16", description="TFLite, float16 weights (float32 IO)",
               **TFLITE)
def float16(job) -> bytes:
    tf, converter = _converter(job)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def int8_converter(job, calibration=None, activations16: bool = False):
    """A converter set up for full-integer quantization calibrated on CALIBRATION (default: the job's),
    int8 activations, or 16-bit activations with int8 weights ("16x8") on request. IO stays float."""
    tf, converter = _converter(job)
    images = np.asarray(job.calibration if calibration is None else calibration, dtype=np.float32)

    def representative_dataset():
        for image in images:
            yield [image[None]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if activations16
        else tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def convert_quiet(converter) -> bytes:
    with warnings.catch_warnings():  # TF warns about input statistics it does not need here
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


@export_format("tflite_int8", "model_int8.tflite", "int8", needs_calibration=True, takes_io=True,
               description="TFLite full integer, uint8 IO, calibrated on the calib split", **TFLITE)
def full_int8(job, calibration=None) -> bytes:
    """Full-integer model. Default uint8 IO: with the Rescaling layer in front, input scale is 1.0 and
    zero-point 0, so raw camera pixels feed it directly. int8 IO (zero-point -128) or float IO on request.
    A job with a fake-quantized model (quantization-aware training) converts that one from its learned ranges."""
    if calibration is None and getattr(job, "qat_model", None) is not None:
        return learned_ranges(job, getattr(job, "int8_io", "uint8"))
    tf, _ = import_keras()
    converter = int8_converter(job, calibration)
    io_type = {"uint8": tf.uint8, "int8": tf.int8, "float": tf.float32}[getattr(job, "int8_io", "uint8")]
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    return convert_quiet(converter)


def learned_ranges(job, io: str = "uint8") -> bytes:
    """The full-integer model of the job's fake-quantized model, every scale from a range training learned: no
    representative dataset, so nothing re-calibrates (and undoes) them. IO: uint8, int8 or float."""
    return from_fake_quantized(job.saved_model(fake_quantized=True), io)


def from_fake_quantized(saved_model: str, io: str = "uint8") -> bytes:
    """`learned_ranges` of a fake-quantized model already exported as a SavedModel (folder SAVED_MODEL)."""
    tf, _ = import_keras()
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = converter.inference_output_type = {"uint8": tf.uint8, "int8": tf.int8,
                                                                        "float": tf.float32}[io]
    return convert_quiet(converter)
