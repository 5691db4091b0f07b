"""`tflite_int8_c`: the full-integer model as the C array an Arduino, ESP32 or STM32 project compiles in
(`model_data.cc` / `model_data.h`, TensorFlow Lite Micro's own layout: 16-byte aligned, with its length), plus the
labels, the input spec and the tensor arena edgeship measured, as C constants. Made from tflite_int8's final bytes
(metadata included), so the array is byte for byte the file the report measured."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgeship.core.formats import export_format
from edgeship.runtime.c_array import ARRAY, HEADER, LENGTH, SOURCE
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import atomic_write_bytes
from edgeship.runtime.spec import ModelInfo

BYTES_PER_LINE = 12
ALIGNMENT = 16  # TFLM reads the flatbuffer in place: its examples align the array to 16 bytes
GUARD = "EDGESHIP_MODEL_DATA_H_"


def c_string(text: str) -> str:
    """TEXT as a C string literal: printable ASCII kept, the rest as octal escapes of its UTF-8 bytes."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\?':
            out.append("\\" + char)  # \? keeps "??" from being read as a trigraph
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_source(data: bytes, labels) -> str:
    lines = [", ".join(f"0x{b:02x}" for b in data[i:i + BYTES_PER_LINE]) for i in range(0, len(data), BYTES_PER_LINE)]
    body = ",\n  ".join(lines)
    return (f"// The model as TensorFlow Lite Micro reads it, written by edgeship export (tflite_int8_c).\n"
            f'#include "{HEADER}"\n\n'
            f"alignas({ALIGNMENT}) const unsigned char {ARRAY}[] = {{\n  {body}\n}};\n"
            f"const unsigned int {LENGTH} = {len(data)}u;\n\n"
            f"const char* const g_model_labels[EDGESHIP_NUM_CLASSES] = {{\n  "
            + ",\n  ".join(c_string(label) for label in labels) + "\n};\n")


def c_header(info: ModelInfo, arena_bytes: int | None, quantization: dict) -> str:
    spec = info.input
    arena = (f"#define EDGESHIP_TENSOR_ARENA_BYTES {arena_bytes}  // allocated by TFLM's reference kernels on the "
             f"workstation; optimized kernels (CMSIS-NN) may need a few kB more\n" if arena_bytes is not None else
             "// EDGESHIP_TENSOR_ARENA_BYTES: not measured (pip install 'edgeship[mcu]' and export again)\n")
    scale, zero = quantization.get("input_scale"), quantization.get("input_zero_point")
    q = (f"#define EDGESHIP_INPUT_SCALE {float(scale)!r}f\n#define EDGESHIP_INPUT_ZERO_POINT {int(zero)}\n"
         if scale else "")
    return (f"// The model's array, length, labels and input spec, written by edgeship export (tflite_int8_c).\n"
            f"#ifndef {GUARD}\n#define {GUARD}\n\n"
            f"extern const unsigned char {ARRAY}[];\nextern const unsigned int {LENGTH};\n\n"
            f"#define EDGESHIP_NUM_CLASSES {len(info.labels)}\n"
            f"extern const char* const g_model_labels[EDGESHIP_NUM_CLASSES];\n\n"
            f"{arena}"
            f"#define EDGESHIP_INPUT_HEIGHT {spec.height}\n#define EDGESHIP_INPUT_WIDTH {spec.width}\n"
            f"#define EDGESHIP_INPUT_CHANNELS {spec.channels}\n"
            f"#define EDGESHIP_INPUT_MIN {float(spec.value_range[0])!r}f  // pixel values the model takes "
            f"({spec.color}, resized {spec.resize})\n"
            f"#define EDGESHIP_INPUT_MAX {float(spec.value_range[1])!r}f\n{q}\n#endif  // {GUARD}\n")


def _info(data: bytes) -> ModelInfo:
    from edgeship.runtime.session import parse_embedded
    from edgeship.runtime.spec import EMBEDDED_KEY
    from edgeship.runtime.tflite_metadata import read_tflite_metadata

    embedded = parse_embedded(read_tflite_metadata(data, "model_int8.tflite").get(EMBEDDED_KEY), "model_int8.tflite")
    return ModelInfo.from_dict(embedded, "model_int8.tflite")


def measured_arena(data: bytes) -> int | None:
    """The arena TFLM allocates for DATA, or None where tflite-micro is not installed or refuses the model."""
    from edgeship.runtime.backends import BACKENDS

    if BACKENDS["tflm"].probe() is None:
        return None
    try:
        return BACKENDS["tflm"].open(Path(SOURCE), data=data).arena_bytes
    except Exception:  # a model TFLM refuses: the export's --also-backend tflm row says why
        return None


@export_format("tflite_int8_c", "model_int8_c", "int8", "c_array", source="tflite_int8", default=False,
               description="tflite_int8 as C source for a microcontroller project: model_data.cc/.h with the "
                           "measured tensor arena, labels and input spec")
def c_array(job) -> Path:
    from edgeship.runtime.backends import BACKENDS

    data = job.converted.get("tflite_int8")
    if data is None:
        raise UsageError("tflite_int8_c is made from tflite_int8, which did not convert in this export")
    quantization = BACKENDS["tflite"].open(Path("model_int8.tflite"), data=data).quantization
    folder = Path(tempfile.mkdtemp(prefix="c-array-", dir=job.scratch_root))
    info = _info(data)  # the labels and input spec embedded in the file, as every runtime reads them
    atomic_write_bytes(folder / SOURCE, c_source(data, info.labels).encode("ascii"))
    atomic_write_bytes(folder / HEADER, c_header(info, measured_arena(data), quantization).encode("ascii"))
    return folder
