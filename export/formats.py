"""The export-format registry: one row per format. CLI choices, docs and tests read this table."""

from __future__ import annotations

from dataclasses import dataclass

from edgeship.runtime.errors import UsageError


@dataclass(frozen=True)
class ExportFormat:
    name: str
    filename: str
    precision: str
    backend: str  # what runs it: a runtime backend (tflite, onnxruntime), or keras / tensorflow
    needs_calibration: bool
    description: str
    converter: str  # "module:function" in edgeship.export, imported only when used

    def convert(self, job) -> bytes:
        module_name, function = self.converter.split(":")
        module = __import__(f"edgeship.export.{module_name}", fromlist=[function])
        return getattr(module, function)(job)

    @property
    def file_format(self) -> str:
        """The file format family a report and a bundle record call `format`: tflite, onnx, keras, saved_model."""
        return self.filename.rsplit(".", 1)[1] if "." in self.filename else self.name

    @property
    def on_device(self) -> bool:
        """Runs with edgeship.runtime (no TensorFlow): what ships to a phone or a board."""
        from edgeship.runtime.backends import BACKENDS

        return self.backend in BACKENDS

    def runs_here(self) -> str | None:
        """What runs this format on this machine ('ai-edge-litert 2.3.0', ...), or None."""
        from edgeship.runtime.backends import BACKENDS

        if self.backend in BACKENDS:
            return BACKENDS[self.backend].probe()
        from edgeship.core.tensorflow import probe_tensorflow

        return probe_tensorflow()


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("keras", "model.keras", "float32", "keras", False,
                     "Keras 3 model as trained: the parity reference (loads with safe_mode)", "tf_models:keras_file"),
        ExportFormat("saved_model", "saved_model", "float32", "tensorflow", False,
                     "TensorFlow SavedModel directory, serving_default takes 0-255 RGB (TF Serving, TF.js)",
                     "tf_models:saved_model"),
        ExportFormat("tflite", "model_float32.tflite", "float32", "tflite", False,
                     "TFLite, float32 weights and activations", "tflite_convert:float32"),
        ExportFormat("tflite_dynamic", "model_dynamic.tflite", "dynamic-int8", "tflite", False,
                     "TFLite dynamic-range: int8 weights, float activations", "tflite_convert:dynamic_range"),
        ExportFormat("tflite_fp16", "model_float16.tflite", "float16", "tflite", False,
                     "TFLite, float16 weights (float32 IO)", "tflite_convert:float16"),
        ExportFormat("tflite_int8", "model_int8.tflite", "int8", "tflite", True,
                     "TFLite full integer, uint8 IO, calibrated on the calib split", "tflite_convert:full_int8"),
        ExportFormat("onnx", "model_float32.onnx", "float32", "onnxruntime", False,
                     "ONNX float32 (tf2onnx)", "onnx_convert:float32"),
        ExportFormat("onnx_int8", "model_int8.onnx", "int8", "onnxruntime", True,
                     "ONNX static QDQ int8 (uint8 activations, int8 weights), per-channel, calibrated on the calib split", "onnx_convert:static_int8"),
        ExportFormat("onnx_dynamic", "model_dynamic.onnx", "dynamic-int8", "onnxruntime", False,
                     "ONNX dynamic int8 (slow for convolutions on CPU)", "onnx_convert:dynamic_int8"),
    )
}
DEFAULT_FORMATS = tuple(FORMATS)


def resolve_formats(names) -> list[ExportFormat]:
    """Validate format names (or 'all'); unknown names list the valid ones."""
    if not names or list(names) == ["all"]:
        return list(FORMATS.values())
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UsageError(f"unknown format(s) {', '.join(unknown)}; valid: {', '.join(FORMATS)}, all")
    return [FORMATS[n] for n in dict.fromkeys(names)]
