"""The built-in export formats, registered where they are implemented: each converter module decorates its
converters with `@export_format(...)` and quant_search attaches the int8 strategies. Importing this module (the
`edgeship.export` package does) registers them all, in the order `edgeship formats` lists them."""

from __future__ import annotations

from edgeship.core.formats import FORMATS, ExportFormat, default_formats, export_format, register_format, resolve_formats, unregister_format

from . import tf_models, tflite_convert, c_array_convert, onnx_convert, ort_convert, int8_strategies  # noqa: F401,I001 - registers, in this order

DEFAULT_FORMATS = default_formats()  # the built-in rows `export` writes unasked

__all__ = ["DEFAULT_FORMATS", "FORMATS", "ExportFormat", "export_format", "register_format", "resolve_formats",
           "unregister_format"]
