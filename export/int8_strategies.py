"""The int8 strategies of the two int8 formats, attached to their registry rows with `@int8_strategy_for`: how a
candidate is quantized again (other calibration, 16-bit activations, layers in float), equalized, bias-corrected
and diagnosed for TFLite and for ONNX Runtime. The search that drives them is quant_search.py."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
from edgeship.core.formats import int8_strategy_for

from . import onnx_convert, tflite_convert
from .quant_diagnosis import LayerError, onnx_layers, tflite_layers
from .quant_search import Candidate, Recipe

logger = logging.getLogger("edgeship")


class _Equalizing:
    """The data-free twins of a strategy's job (Nagel et al. 2019): the Keras model equalized, bias-corrected, or
    both, each made once, their conversions kept apart from the plain job's."""

    equalization = None
    bias_correction = None

    def _job(self, recipe: Recipe):
        if not (recipe.equalized or recipe.bias_corrected):
            return self.job
        twins = self.__dict__.setdefault("_twins", {})
        key = (recipe.equalized, recipe.bias_corrected)
        if key not in twins:
            from dataclasses import replace as copy_job

            from .bias_correction import correct_biases
            from .equalize import equalized_copy, plain_copy

            if recipe.bias_corrected:  # on a copy of the same model without it (equalized or plain)
                twin = plain_copy(self._job(Recipe(recipe.method, equalized=recipe.equalized)).model)
                self.bias_correction = correct_biases(twin, self.job.calibration)
            else:
                twin, self.equalization = equalized_copy(self.job.model)
            twins[key] = copy_job(self.job, model=twin, _workdir=None, _prepared_onnx=None)
        return twins[key]

    def _data_free(self) -> list[Recipe]:
        """The data-free recipes worth converting: CLE when it equalizes a pair, then CLE + BC; BC alone when no
        pair can be equalized (a ReLU6 network) and it corrects a layer."""
        equalized = Recipe(self.plain.method, equalized=True)
        self._job(equalized)
        if self.equalization.pairs:
            both = Recipe(self.plain.method, equalized=True, bias_corrected=True)
            self._job(both)
            return [equalized, both] if self.bias_correction.layers else [equalized]
        alone = Recipe(self.plain.method, bias_corrected=True)
        self._job(alone)
        return [alone] if self.bias_correction.layers else []

    def quantization_aware(self) -> Candidate | None:
        """(d): the format converted from the export's quantization-aware fine-tune (made once, shared by both int8
        formats), from its learned ranges; None when the export has no training split to fine-tune on."""
        outcome = self.job.quantization_aware()
        if outcome is None:
            return None
        twin = replace(self.job, qat_model=outcome.model, _workdir=None, _prepared_onnx=None)
        try:
            return Candidate(Recipe(self.plain.method, quantization_aware=True), type(self).from_learned_ranges(twin),
                             agrees_with=outcome.val_top)
        finally:
            twin.cleanup()

    def _close_equalized(self) -> None:
        for twin in self.__dict__.get("_twins", {}).values():
            twin.cleanup()


@int8_strategy_for("tflite_int8")
class TFLiteStrategy(_Equalizing):
    backend = "tflite"
    plain = Recipe("min-max")
    from_learned_ranges = staticmethod(tflite_convert.full_int8)

    def __init__(self, job):
        self.job = job
        self._more = None  # the larger calibration set, once drawn

    def _images(self, recipe: Recipe):
        return self.job.calibration if recipe.calibration_images is None else self._more

    def variants(self):
        for recipe in self._data_free():
            yield Candidate(recipe, tflite_convert.full_int8(self._job(recipe)))
        more = self.job.more_calibration() if self.job.more_calibration else None
        if more is not None and len(more) > len(self.job.calibration):
            self._more = more
            yield Candidate(Recipe("min-max", calibration_images=len(more)), tflite_convert.full_int8(self.job, more))
        converter = tflite_convert.int8_converter(self.job, activations16=True)
        yield Candidate(Recipe("min-max", activation_bits=16), tflite_convert.convert_quiet(converter), io="float")

    def float_model(self) -> bytes:
        return tflite_convert.float32(self.job)

    def diagnose(self, plain: bytes, images: np.ndarray) -> list[LayerError]:
        return tflite_layers(tflite_convert.int8_converter(self.job), images, plain)

    def with_float_layers(self, base: Candidate, nodes: list[str]) -> Candidate:
        """BASE's recipe (its calibration images too) with NODES kept in float."""
        import tensorflow as tf

        recipe = replace(base.recipe, float_nodes=tuple(nodes))
        images = self._images(recipe)
        calibration = np.asarray(images, dtype=np.float32)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=tflite_convert.int8_converter(self._job(recipe), images),
            debug_dataset=lambda: ([image[None]] for image in calibration[:1]),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(nodes)))
        return Candidate(recipe, debugger.get_nondebug_quantized_model(), io="float")

    def close(self):
        self._close_equalized()


@int8_strategy_for("onnx_int8")
class OnnxStrategy(_Equalizing):
    backend = "onnxruntime"
    plain = Recipe("MinMax")
    from_learned_ranges = staticmethod(onnx_convert.static_int8)
    VARIANTS = (Recipe("Entropy"), Recipe("Percentile"), Recipe("MinMax", per_channel=False))

    def __init__(self, job):
        self.job = job
        self._tmp = job.temp_dir("edgeship-onnx-search-")
        self.prepared = job.prepared_onnx()  # the graph the plain onnx_int8 was quantized from
        self._count = 0

    def _quantize(self, recipe: Recipe) -> bytes:
        self._count += 1
        prepared = self._job(recipe).prepared_onnx() if recipe.equalized or recipe.bias_corrected else self.prepared
        return onnx_convert.quantize_qdq(prepared, Path(self._tmp.name, f"trial{self._count}.onnx"),
                                         self.job.calibration, recipe.method, recipe.per_channel,
                                         list(recipe.float_nodes))

    def variants(self):
        for recipe in self._data_free():
            yield Candidate(recipe, self._quantize(recipe))
        for recipe in self.VARIANTS:
            yield Candidate(recipe, self._quantize(recipe))

    def float_model(self) -> bytes:
        return self.prepared.read_bytes()

    def diagnose(self, plain: bytes, images: np.ndarray) -> list[LayerError]:
        qdq = Path(self._tmp.name, "plain.onnx")
        qdq.write_bytes(plain)
        return onnx_layers(self.prepared, qdq, images, Path(self._tmp.name))

    def with_float_layers(self, base: Candidate, nodes: list[str]) -> Candidate:
        recipe = replace(base.recipe, float_nodes=tuple(nodes))
        return Candidate(recipe, self._quantize(recipe))

    def close(self):
        self._tmp.cleanup()
        self._close_equalized()
