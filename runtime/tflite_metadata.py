"""Read named metadata entries from a `.tflite` file without TensorFlow.

A TFLite model is a FlatBuffer (schema: tensorflow/lite/schema/schema.fbs). We need two fields of the
root `Model` table: `buffers` (slot 4) and `metadata` (slot 6, entries of {name, buffer index}). Reading
them with the small `flatbuffers` package avoids depending on any interpreter's private schema module.
"""

from __future__ import annotations

import struct

from flatbuffers import number_types
from flatbuffers.table import Table

from .errors import ModelLoadError

TFLITE_IDENTIFIER = b"TFL3"

# vtable offsets = 4 + 2 * field index
_MODEL_BUFFERS, _MODEL_METADATA = 12, 16
_METADATA_NAME, _METADATA_BUFFER = 4, 6
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 4, 6, 8


def is_tflite(data: bytes) -> bool:
    return len(data) >= 8 and data[4:8] == TFLITE_IDENTIFIER


def _tables(table: Table, slot: int):
    offset = table.Offset(slot)
    if not offset:
        return
    start, count = table.Vector(offset), table.VectorLen(offset)
    for i in range(count):
        yield Table(table.Bytes, table.Indirect(start + 4 * i))


def _buffer_bytes(data: bytes, buffer: Table) -> bytes:
    offset = buffer.Offset(_BUFFER_DATA)
    if offset:
        start, count = buffer.Vector(offset), buffer.VectorLen(offset)
        return bytes(data[start : start + count])
    # Models over 2 GB keep buffer bytes after the FlatBuffer, addressed by offset/size.
    off = buffer.Offset(_BUFFER_OFFSET)
    size = buffer.Offset(_BUFFER_SIZE)
    if off and size:
        start = buffer.Get(number_types.Uint64Flags, buffer.Pos + off)
        length = buffer.Get(number_types.Uint64Flags, buffer.Pos + size)
        return bytes(data[start : start + length])
    return b""


def read_tflite_metadata(data: bytes, source: str = "model") -> dict[str, bytes]:
    """Return {metadata name: bytes} for every metadata entry in a TFLite model."""
    if not is_tflite(data):
        raise ModelLoadError(f"{source}: not a TFLite model (no 'TFL3' file identifier)")
    try:
        root = Table(bytearray(data), struct.unpack_from("<I", data, 0)[0])
        buffers = list(_tables(root, _MODEL_BUFFERS))
        entries: dict[str, bytes] = {}
        for entry in _tables(root, _MODEL_METADATA):
            name_offset = entry.Offset(_METADATA_NAME)
            if not name_offset:
                continue
            name = entry.String(entry.Pos + name_offset).decode("utf-8", "replace")
            index_offset = entry.Offset(_METADATA_BUFFER)
            index = entry.Get(number_types.Uint32Flags, entry.Pos + index_offset) if index_offset else 0
            if index >= len(buffers):
                raise ModelLoadError(f"{source}: metadata {name!r} points past the buffer table")
            entries[name] = _buffer_bytes(data, buffers[index])
        return entries
    except ModelLoadError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError) as exc:  # flatbuffers: TypeError
        raise ModelLoadError(f"{source}: corrupt TFLite FlatBuffer ({exc})") from exc
