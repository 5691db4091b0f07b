"""The export-format registry: the descriptor type and the table; the rows are registered by the layer that
implements them (export's converter modules, with `@export_format(...)` on each converter, as timm's
`@register_model` does), or by a user's own code. Every field is a callable or a value: nothing here imports
upward. The CLI's choices, the exporter, the gate and `edgeship formats` read the table; core code that runs
without export loaded (the files a run owns) reads only what is registered and the bundle's own records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgeship.runtime.errors import UsageError


def keep_as_is(data, metadata: dict):
    """The embedder of a format that carries no metadata of its own (the bundle's edgeship.json describes it)."""
    return data


@dataclass(frozen=True)
class ExportFormat:
    name: str
    filename: str
    precision: str
    backend: str  # what runs it: a runtime backend (tflite, onnxruntime), or keras / tensorflow
    needs_calibration: bool
    description: str
    converter: Callable  # job -> bytes, or a Path to a directory artifact
    embedder: Callable = keep_as_is  # (bytes, metadata) -> bytes with edgeship's metadata inside
    int8_strategy: type | None = None  # a quant_search strategy class: val check, diagnosis, the --max-drop search
    takes_io: bool = False  # `export --io uint8|int8|float` sets its input/output type
    readiness: Callable | None = None  # (path, scratch) -> which accelerator would take it whole
    default: bool = True  # written by `export` without --formats; False: only when named (or with `all`)
    source: str | None = None  # made from this format's final bytes (the C array of tflite_int8): exported with it

    def convert(self, job):
        return self.converter(job)

    def embed(self, data, metadata: dict):
        return self.embedder(data, metadata)

    @property
    def file_format(self) -> str:
        """The file format family a report and a bundle record call `format`: tflite, onnx, keras, saved_model."""
        return self.filename.rsplit(".", 1)[1] if "." in self.filename else self.name

    @property
    def on_device(self) -> bool:
        """Runs with edgeship.runtime (no TensorFlow): what ships to a phone or a board."""
        from edgeship.runtime.backends import BACKENDS

        return self.backend in BACKENDS and self.source is None  # a source's copy is judged as its source

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


def export_format(name: str, filename: str, precision: str, backend: str, description: str, **options) -> Callable:
    """Decorator: register the decorated converter as format NAME (`options`: the other ExportFormat fields)."""
    def register(converter: Callable) -> Callable:
        register_format(ExportFormat(name, filename, precision, backend, options.pop("needs_calibration", False),
                                     description, converter, **options))
        return converter
    return register


def int8_strategy_for(name: str) -> Callable:
    """Decorator: the decorated quant_search strategy class checks and searches format NAME's int8 artifact."""
    def attach(strategy: type) -> type:
        from dataclasses import replace

        if name not in FORMATS:
            raise UsageError(f"no export format {name!r} to attach an int8 strategy to")
        FORMATS[name] = replace(FORMATS[name], int8_strategy=strategy)
        return strategy
    return attach


def default_formats() -> tuple[str, ...]:
    """The registered rows `export` writes unasked."""
    return tuple(name for name, fmt in FORMATS.items() if fmt.default)


def resolve_formats(names) -> list[ExportFormat]:
    """Validate format names (or 'all'); unknown names list the valid ones. No names: every default row."""
    if not names:
        return [fmt for fmt in FORMATS.values() if fmt.default]
    if list(names) == ["all"]:
        return list(FORMATS.values())
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UsageError(f"unknown format(s) {', '.join(unknown)}; valid: {', '.join(FORMATS)}, all")
    chosen: list[str] = []
    for name in names:  # a format made from another's bytes comes after it (the C array after tflite_int8)
        chosen += [n for n in (FORMATS[name].source, name) if n is not None and n not in chosen]
    return [FORMATS[n] for n in chosen]


def device_file_formats() -> set[str]:
    """File formats that ship to a device (tflite, onnx): where accelerators and speed-ups are judged."""
    return {f.file_format for f in FORMATS.values() if f.on_device}


def bundle_files() -> list[str]:
    """Every registered format's file or directory name inside a bundle."""
    return [f.filename for f in FORMATS.values()]
