"""The export-format registry: one registration per format carries everything edgeship does with it.

A row names its converter, the metadata embedder, the int8 search strategy (if any), whether `--io` applies,
whether export times it for the speed-up figure, and its device-readiness check. The CLI's choices, the
exporter, the bench matrix (through the bundle records it writes), the files `train --overwrite` owns, the
gate and the speed-up table all read this table, so a new format is `register_format(ExportFormat(...))`
and nothing else. Functions are named "module:function" inside `edgeship.export` (imported only when used,
so reading the table never imports TensorFlow), or given as callables by code that registers its own format.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Union

from edgeship.runtime.errors import UsageError

Ref = Union[str, Callable, None]  # "module:function" in edgeship.export, a callable, or nothing


def resolve_ref(ref: Ref) -> Callable | None:
    """The callable a registry field names."""
    if ref is None or callable(ref):
        return ref
    module_name, attribute = ref.split(":")
    return getattr(importlib.import_module(f"edgeship.export.{module_name}"), attribute)


@dataclass(frozen=True)
class ExportFormat:
    name: str
    filename: str
    precision: str
    backend: str  # what runs it: a runtime backend (tflite, onnxruntime), or keras / tensorflow
    needs_calibration: bool
    description: str
    converter: Ref  # job -> bytes, or a Path to a directory artifact
    embedder: Ref = "embed:keep_as_is"  # (bytes, metadata) -> bytes with edgeship's metadata inside
    int8_strategy: Ref = None  # job -> a quant_search strategy: val check, diagnosis and the --max-drop search
    takes_io: bool = False  # `export --io uint8|int8|float` sets its input/output type
    timed: bool = False  # export times it at one thread so the report can say what quantization buys
    readiness: Ref = None  # (path, scratch) -> which accelerator would take it whole
    default: bool = True  # written by `export` without --formats; False: only when named (or with `all`)

    def convert(self, job):
        return resolve_ref(self.converter)(job)

    def embed(self, data, metadata: dict):
        return resolve_ref(self.embedder)(data, metadata)

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


FORMATS: dict[str, ExportFormat] = {}


def register_format(fmt: ExportFormat, replace: bool = False) -> ExportFormat:
    """Add FMT to the registry (export, CLI, bench, layout and gate see it from then on)."""
    if fmt.name in FORMATS and not replace:
        raise UsageError(f"export format {fmt.name!r} is already registered")
    if fmt.name == "all" or "," in fmt.name:
        raise UsageError(f"{fmt.name!r} cannot name a format: the CLI reads it as a list")
    FORMATS[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    FORMATS.pop(name, None)


_TFLITE = dict(backend="tflite", embedder="embed:embed_tflite", timed=True, readiness="readiness:tflite_readiness")
_ONNX = dict(backend="onnxruntime", embedder="embed:embed_onnx", timed=True, readiness="readiness:onnx_readiness")
_ORT = dict(backend="onnxruntime", embedder="embed:embed_ort", timed=True, readiness="readiness:ort_readiness")
for _fmt in (
    ExportFormat("keras", "model.keras", "float32", "keras", False,
                 "Keras 3 model as trained: the parity reference (loads with safe_mode)", "tf_models:keras_file"),
    ExportFormat("saved_model", "saved_model", "float32", "tensorflow", False,
                 "TensorFlow SavedModel directory, serving_default takes 0-255 RGB (TF Serving, TF.js)",
                 "tf_models:saved_model", embedder="embed:embed_saved_model", default=False),
    ExportFormat("tflite", "model_float32.tflite", "float32", needs_calibration=False,
                 description="TFLite, float32 weights and activations", converter="tflite_convert:float32", **_TFLITE),
    # Dynamic-range formats are named choices, not defaults: on a real ImageNet MobileNetV2 (224 px, 1 thread)
    # tflite_dynamic ran no faster than float32 (8.20 vs 8.15 ms; XNNPACK does not take it) and onnx_dynamic was
    # 2.8x slower and lost 25.93 pp. They help where weights dominate: large Dense layers, size-bound downloads.
    ExportFormat("tflite_dynamic", "model_dynamic.tflite", "dynamic-int8", needs_calibration=False,
                 description="TFLite dynamic-range: int8 weights, float activations (4x smaller; no faster for "
                             "CNNs on XNNPACK)", converter="tflite_convert:dynamic_range", default=False, **_TFLITE),
    ExportFormat("tflite_fp16", "model_float16.tflite", "float16", needs_calibration=False,
                 description="TFLite, float16 weights (float32 IO)", converter="tflite_convert:float16", **_TFLITE),
    ExportFormat("tflite_int8", "model_int8.tflite", "int8", needs_calibration=True,
                 description="TFLite full integer, uint8 IO, calibrated on the calib split",
                 converter="tflite_convert:full_int8", int8_strategy="quant_search:TFLiteStrategy", takes_io=True,
                 **_TFLITE),
    ExportFormat("onnx", "model_float32.onnx", "float32", needs_calibration=False,
                 description="ONNX float32 (tf2onnx)", converter="onnx_convert:float32", **_ONNX),
    ExportFormat("onnx_int8", "model_int8.onnx", "int8", needs_calibration=True,
                 description="ONNX static QDQ int8 (uint8 activations, int8 weights), per-channel, calibrated on "
                             "the calib split", converter="onnx_convert:static_int8",
                 int8_strategy="quant_search:OnnxStrategy", **_ONNX),
    ExportFormat("onnx_dynamic", "model_dynamic.onnx", "dynamic-int8", needs_calibration=False,
                 description="ONNX dynamic int8 (slow and lossy for convolutions on CPU; for Dense-heavy models)",
                 converter="onnx_convert:dynamic_int8", default=False, **_ONNX),
    ExportFormat("ort", "model_float32.ort", "float32", needs_calibration=False,
                 description="ONNX Runtime mobile format (.ort), float32, batch fixed at 1",
                 converter="ort_convert:float32", default=False, **_ORT),
    ExportFormat("ort_int8", "model_int8.ort", "int8", needs_calibration=True,
                 description="ONNX Runtime mobile format (.ort), static QDQ int8, batch fixed at 1 (NNAPI, CoreML)",
                 converter="ort_convert:static_int8", default=False, **_ORT),
):
    register_format(_fmt)
DEFAULT_FORMATS = tuple(name for name, fmt in FORMATS.items() if fmt.default)  # built-in rows `export` writes unasked


def resolve_formats(names) -> list[ExportFormat]:
    """Validate format names (or 'all'); unknown names list the valid ones. No names: every default row."""
    if not names:
        return [fmt for fmt in FORMATS.values() if fmt.default]
    if list(names) == ["all"]:
        return list(FORMATS.values())
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UsageError(f"unknown format(s) {', '.join(unknown)}; valid: {', '.join(FORMATS)}, all")
    return [FORMATS[n] for n in dict.fromkeys(names)]


def device_families() -> set[str]:
    """File formats that ship to a device (tflite, onnx): where accelerators and speed-ups are judged."""
    return {f.file_format for f in FORMATS.values() if f.on_device}


def timed_families() -> set[str]:
    """File formats whose quantized rows get a speed-up over the float32 row of the same family."""
    return {f.file_format for f in FORMATS.values() if f.timed}


def bundle_files() -> list[str]:
    """Every registered format's file or directory name inside a bundle."""
    return [f.filename for f in FORMATS.values()]
