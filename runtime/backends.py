"""The runtime-backend registry: one `Backend` row per runtime, registered with `register_backend`. A row says which
files the runtime runs as their own (by suffix), which other runtimes' files it can also compute (OpenVINO reads
.tflite and .onnx), its bench rows (ONNX Runtime's providers) and how to open a `Session` (runtime/session.py).
`Classifier`, `predict --backend`, the bench matrix and `export --also-backend` all read this table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ModelLoadError, UsageError
from .onnx_session import OnnxSession, onnx_external_data, onnx_providers, probe_onnx, refuse_onnx_external_data  # noqa: F401 - re-exported
from .session import Session, image_size, read_model_file  # noqa: F401 - re-exported
from .tflite_session import TFLiteSession, probe_tflite
from .tflm_session import TFLMSession, probe_tflm
from .c_array import open_c_array


@dataclass(frozen=True)
class Backend:
    name: str
    suffixes: tuple[str, ...]  # files it runs as their own runtime (.tflite); () for one chosen by name only
    open: Callable[..., Session]  # (path, threads=None, data=None, provider=None) -> a Session
    probe: Callable[[], str | None]  # the implementation that would be used, or None when not installed
    reads: tuple[str, ...] = ()  # other runtimes' file formats it also computes: bench rows, --also-backend
    providers: tuple[str | None, ...] = (None,)  # one bench row per provider (ONNX Runtime: cpu, cuda, tensorrt)
    install: str = ""  # what to pip install when `probe` finds nothing
    bench_default: bool = True  # in `bench --backend all`; False: only when named (a slow reference interpreter)


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend, replace: bool = False) -> Backend:
    """Add BACKEND (Classifier, predict, bench and export --also-backend see it from then on)."""
    if backend.name in BACKENDS and not replace:
        raise UsageError(f"runtime backend {backend.name!r} is already registered")
    BACKENDS[backend.name] = backend
    return backend


def unregister_backend(name: str) -> None:
    BACKENDS.pop(name, None)


def native_backend(path: Path) -> str | None:
    """The backend that runs PATH as its own file, by suffix."""
    suffix = Path(path).suffix.lower()
    return next((b.name for b in BACKENDS.values() if suffix in b.suffixes), None)


def _probe_openvino() -> str | None:
    import importlib

    try:
        return f"openvino {importlib.import_module('openvino').__version__.split('-')[0]}"
    except Exception:
        return None


def _open_openvino(path: Path, threads: int | None = None, data: bytes | None = None, **_):
    """OpenVINO computes; the file's own runtime (opened first) describes its input, output and labels. Both
    read the same bytes (DATA, or PATH read once)."""
    from .openvino_backend import OpenVinoSession

    own = native_backend(path)
    if own is None or Path(path).suffix.lower().lstrip(".") not in BACKENDS["openvino"].reads:
        raise ModelLoadError(f"{path}: OpenVINO reads {' and '.join('.' + r for r in BACKENDS['openvino'].reads)} files")
    native = BACKENDS[own].open(Path(path), threads=threads, data=data)
    return OpenVinoSession(path, native, threads)


def _open_onnx(path: Path, threads: int | None = None, data: bytes | None = None, provider: str | None = None, **_):
    return OnnxSession(path, threads=threads, provider=provider, data=data)


def _open_tflite(path: Path, threads: int | None = None, data: bytes | None = None, **_):
    return TFLiteSession(path, threads=threads, data=data)


register_backend(Backend("tflite", (".tflite",), _open_tflite, probe_tflite, install="ai-edge-litert"))
register_backend(Backend("onnxruntime", (".onnx", ".ort"), _open_onnx, probe_onnx,  # .ort: its mobile format
                         providers=("cpu", "cuda", "tensorrt"), install="onnxruntime"))
# OpenVINO reads the .tflite and .onnx files the other two run; chosen by name only (--backend openvino)
register_backend(Backend("openvino", (), _open_openvino, _probe_openvino, reads=("tflite", "onnx"),
                         install="edgeship[openvino]"))


def _open_tflm(path: Path, threads: int | None = None, data: bytes | None = None, **_):
    return TFLMSession(path, threads=threads, data=data)


# TensorFlow Lite Micro reads the .tflite files (the microcontroller's interpreter and reference kernels): parity
# with `export --also-backend tflm`, the arena a microcontroller needs, bench rows when named (it is slow here)
register_backend(Backend("tflm", (), _open_tflm, probe_tflm, reads=("tflite",), install="edgeship[mcu]",
                         bench_default=False))


# the C array a microcontroller project compiles (export's tflite_int8_c): LiteRT on the bytes read back from the
# source, so its parity row is measured on what the C compiler puts in flash; chosen by a bundle record only
register_backend(Backend("c_array", (), open_c_array, probe_tflite, install="ai-edge-litert", bench_default=False))


def backend_for(path: Path, name: str = "auto") -> Backend:
    """Pick the backend by name, or by file suffix when name is 'auto'."""
    if name != "auto":
        try:
            return BACKENDS[name]
        except KeyError as exc:
            raise UsageError(f"unknown backend {name!r}; choose from auto, {', '.join(BACKENDS)}") from exc
    suffix = Path(path).suffix.lower()
    for backend in BACKENDS.values():
        if suffix in backend.suffixes:
            return backend
    known = ", ".join(s for b in BACKENDS.values() for s in b.suffixes)
    raise ModelLoadError(f"{path}: unknown model file type {suffix!r}; expected one of {known}")
