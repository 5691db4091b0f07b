"""Read the *standard* TFLite metadata (MediaPipe Model Maker, the TFLite Task Library, TF Hub) without TensorFlow.

What a classifier needs from it: the input's NormalizationOptions (mean, std), its image size, the labels
file of the output (an associated file of type TENSOR_AXIS_LABELS, stored in the zip archive appended to
the FlatBuffer) and the output's ScoreThresholdingOptions. Anything else in the metadata is ignored.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from .errors import ModelLoadError
from .tflite_metadata import read_tflite_metadata

STANDARD_KEY = "TFLITE_METADATA"


@dataclass(frozen=True)
class StandardMetadata:
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    image_size: tuple[int, int] | None = None  # (height, width)
    labels: tuple[str, ...] | None = None
    score_threshold: float | None = None


def read_standard_metadata(data: bytes, source: str) -> StandardMetadata | None:
    """The standard metadata of a .tflite's bytes, or None when it carries none."""
    raw = read_tflite_metadata(data, source).get(STANDARD_KEY)
    if raw is None:
        return None
    from .vendor import tflite_metadata_schema_py_generated as md

    try:
        model = md.ModelMetadataT.InitFromPackedBuf(bytearray(raw), 0)
        subgraph = (model.subgraphMetadata or [None])[0]
        if subgraph is None:
            return StandardMetadata()
        inputs, outputs = subgraph.inputTensorMetadata or [], subgraph.outputTensorMetadata or []
        image, scores = (inputs[0] if inputs else None), (outputs[0] if outputs else None)
    except ModelLoadError:
        raise
    except Exception as exc:  # generated FlatBuffers code raises anything on a corrupt buffer
        raise ModelLoadError(f"{source}: corrupt standard TFLite metadata ({type(exc).__name__}: {exc})") from exc
    mean = std = size = threshold = None
    for unit in _units(image, subgraph.inputProcessUnits):
        if unit.optionsType == md.ProcessUnitOptions.NormalizationOptions and unit.options is not None:
            mean, std = _floats(unit.options.mean), _floats(unit.options.std)
    content = getattr(image, "content", None)
    if content is not None and content.contentPropertiesType == md.ContentProperties.ImageProperties:
        default = getattr(content.contentProperties, "defaultSize", None)
        if default is not None and default.height and default.width:
            size = (int(default.height), int(default.width))
    for unit in _units(scores, subgraph.outputProcessUnits):
        if unit.optionsType == md.ProcessUnitOptions.ScoreThresholdingOptions and unit.options is not None:
            threshold = float(unit.options.globalScoreThreshold)
    labels = _labels(data, source, scores, md)
    return StandardMetadata(mean, std, size, labels, threshold)


def _units(tensor, subgraph_units) -> list:
    return list(getattr(tensor, "processUnits", None) or []) + list(subgraph_units or [])


def _floats(values) -> tuple[float, ...] | None:
    return tuple(float(v) for v in values) if values is not None and len(values) else None


def _labels(data: bytes, source: str, tensor, md) -> tuple[str, ...] | None:
    files = [f for f in (getattr(tensor, "associatedFiles", None) or [])
             if f.type in (md.AssociatedFileType.TENSOR_AXIS_LABELS, md.AssociatedFileType.TENSOR_VALUE_LABELS)]
    if not files:
        return None
    name = files[0].name.decode() if isinstance(files[0].name, bytes) else files[0].name
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            text = archive.read(name).decode("utf-8")
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{source}: its metadata names a labels file {name!r} that is not packed in the "
                             f"model ({exc})") from exc
    return tuple(line.strip() for line in text.splitlines() if line.strip())
