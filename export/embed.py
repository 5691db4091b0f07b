"""Embed labels + input spec (+ provenance) into the artifact itself, by artifact family.

TFLite: a named entry in the model's `metadata` table, plus the standard TFLite metadata that MediaPipe
reads. ONNX: a `metadata_props` key. edgeship.runtime reads both back without TensorFlow.
"""

from __future__ import annotations

import json

import numpy as np
from edgeship.core.errors import ExportError
from edgeship.runtime.spec import EMBEDDED_KEY, ModelInfo

from .tflite_standard_metadata import LABELS_FILE, STANDARD_KEY, append_associated_files, build_metadata, output_labels


def _payload(metadata: dict) -> bytes:
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def set_tflite_metadata(data: bytes, entries: dict[str, bytes]) -> bytes:
    """Add (or replace) named entries of the model's `metadata` table, each pointing to a new buffer."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) not in entries]
    for name, payload in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(payload, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def embed_tflite(data: bytes, metadata: dict) -> bytes:
    """edgeship's JSON entry, the standard TFLite metadata (MediaPipe / Task Library) and labels.txt
    appended as its associated file."""
    info = ModelInfo.from_dict(metadata)
    standard = build_metadata(info, name=f"edgeship {metadata.get('format', 'tflite')}",
                              description=f"{len(info.labels)}-class image classifier "
                                          f"({metadata.get('precision', 'float32')}), exported by edgeship")
    data = set_tflite_metadata(data, {EMBEDDED_KEY: _payload(metadata), STANDARD_KEY: standard})
    labels = "".join(f"{label}\n" for label in output_labels(info)).encode("utf-8")
    return append_associated_files(data, {LABELS_FILE: labels})


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
