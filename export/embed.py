"""Embed labels + input spec (+ provenance) into the artifact itself, by artifact family.

TFLite: a named entry in the model's `metadata` table. ONNX: a `metadata_props` key. Both are read
back by edgeship.runtime without TensorFlow.
"""

from __future__ import annotations

import json

import numpy as np

from edgeship.runtime.errors import ExportError
from edgeship.runtime.spec import EMBEDDED_KEY


def _payload(metadata: dict) -> bytes:
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def embed_tflite(data: bytes, metadata: dict) -> bytes:
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != EMBEDDED_KEY]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(_payload(metadata), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = EMBEDDED_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def embed_onnx(data: bytes, metadata: dict) -> bytes:
    import onnx

    model = onnx.load_from_string(data)
    kept = [p for p in model.metadata_props if p.key != EMBEDDED_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=EMBEDDED_KEY, value=_payload(metadata).decode("utf-8"))
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # onnx raises ValidationError / InferenceError
        raise ExportError(f"ONNX model fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    return model.SerializeToString()


EMBEDDERS = {"tflite": embed_tflite, "onnxruntime": embed_onnx}
