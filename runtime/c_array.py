"""The C source a microcontroller project compiles the model from (`model_data.cc`, written by export's
`tflite_int8_c`), read back into the .tflite bytes it holds: parity of that artifact is measured on what a C
compiler would put in flash, not on the file it was made from. Reading never compiles or runs anything."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ModelLoadError
from .session import read_model_file
from .tflite_session import TFLiteSession

SOURCE, HEADER = "model_data.cc", "model_data.h"
ARRAY, LENGTH = "g_model_data", "g_model_data_len"
_ARRAY = re.compile(r"const\s+unsigned\s+char\s+" + ARRAY + r"\[\]\s*=\s*\{([0-9a-fA-Fx,\s]*)\};")
_LENGTH = re.compile(r"const\s+unsigned\s+int\s+" + LENGTH + r"\s*=\s*(\d+)u?;")


def read_c_array(folder: Path) -> bytes:
    """The bytes of `g_model_data` in FOLDER/model_data.cc, checked against `g_model_data_len`."""
    source = Path(folder) / SOURCE
    text = read_model_file(source).decode("ascii", errors="replace")
    array, length = _ARRAY.search(text), _LENGTH.search(text)
    if array is None or length is None:
        raise ModelLoadError(f"{source}: no `{ARRAY}[]` array with its `{LENGTH}`; re-export with "
                             f"--formats tflite_int8_c")
    try:
        data = bytes(int(item, 16) for item in array.group(1).replace(",", " ").split())
    except ValueError:
        raise ModelLoadError(f"{source}: `{ARRAY}` holds something other than hex bytes; re-export it") from None
    if len(data) != int(length.group(1)):
        raise ModelLoadError(f"{source}: `{ARRAY}` holds {len(data)} bytes but `{LENGTH}` says "
                             f"{length.group(1)}; re-export it")
    return data


def open_c_array(path: Path, threads: int | None = None, data: bytes | None = None, **_) -> TFLiteSession:
    """LiteRT on the bytes of the C array in folder PATH (DATA, when given, is those bytes already read)."""
    folder = Path(path)
    return TFLiteSession(folder / SOURCE, threads=threads, data=data if data is not None else read_c_array(folder))
