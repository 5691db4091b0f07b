"""The *standard* TFLite model metadata that MediaPipe Tasks and the TFLite Task Library read.

Phone apps load an image classifier with MediaPipe's `ImageClassifier` only when the `.tflite` carries
a `TFLITE_METADATA` entry (schema `metadata_schema.fbs`, identifier "M001") describing the input image
(color space, NormalizationOptions) and the output's labels as an *associated file* — a zip archive
appended to the FlatBuffer. edgeship's own `edgeship` entry (labels + input spec as JSON) sits beside it.
"""

from __future__ import annotations

import io
import zipfile

import flatbuffers
from edgeship.runtime.spec import ModelInfo, range_normalization
from edgeship.runtime.vendor import tflite_metadata_schema_py_generated as md

STANDARD_KEY = "TFLITE_METADATA"
LABELS_FILE = "labels.txt"
MIN_PARSER_VERSION = "1.0.0"  # every field written here exists since schema 1.0.0
_IDENTIFIER = b"M001"


def _stats(low: float, high: float):
    stats = md.StatsT()
    stats.min, stats.max = [float(low)], [float(high)]
    return stats


def _input_metadata(info: ModelInfo):
    tensor = md.TensorMetadataT()
    tensor.name = "image"
    tensor.description = (f"{info.input.width}x{info.input.height} {info.input.color} image, "
                          f"values {info.input.value_range[0]:g}-{info.input.value_range[1]:g}")
    properties = md.ImagePropertiesT()
    properties.colorSpace = md.ColorSpaceType.GRAYSCALE if info.input.channels == 1 else md.ColorSpaceType.RGB
    tensor.content = md.ContentT()
    tensor.content.contentPropertiesType = md.ContentProperties.ImageProperties
    tensor.content.contentProperties = properties
    mean, std = range_normalization(info.input.value_range)  # edgeship's models take 0-255: (0, 1)
    options = md.NormalizationOptionsT()
    options.mean, options.std = [mean], [std]
    unit = md.ProcessUnitT()
    unit.optionsType = md.ProcessUnitOptions.NormalizationOptions
    unit.options = options
    tensor.processUnits = [unit]
    tensor.stats = _stats(*info.input.value_range)
    return tensor


def _output_metadata(info: ModelInfo):
    tensor = md.TensorMetadataT()
    tensor.name = "probability"
    tensor.description = ("probability of the positive class" if info.task == "binary"
                          else "probability of each class")
    tensor.content = md.ContentT()
    tensor.content.contentPropertiesType = md.ContentProperties.FeatureProperties
    tensor.content.contentProperties = md.FeaturePropertiesT()
    tensor.stats = _stats(0.0, 1.0)
    labels = md.AssociatedFileT()
    labels.name = LABELS_FILE
    labels.description = "class names, one per output index"
    labels.type = md.AssociatedFileType.TENSOR_AXIS_LABELS
    tensor.associatedFiles = [labels]
    if info.unknown_threshold is not None:
        # Phone apps reject the same images as edgeship's runtime: MediaPipe's classifier drops every category
        # scoring below this, so an image whose top score is under the threshold gets no class ("unknown").
        unit = md.ProcessUnitT()
        unit.optionsType = md.ProcessUnitOptions.ScoreThresholdingOptions
        unit.options = md.ScoreThresholdingOptionsT()
        unit.options.globalScoreThreshold = float(info.unknown_threshold)
        tensor.processUnits = [unit]
    return tensor


def output_labels(info: ModelInfo) -> list[str]:
    """One name per output score: a binary model's single sigmoid output is the last (positive) class."""
    return [info.labels[-1]] if info.task == "binary" else list(info.labels)


def build_metadata(info: ModelInfo, name: str, description: str) -> bytes:
    """The `TFLITE_METADATA` FlatBuffer for a single-input image classifier."""
    subgraph = md.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [_input_metadata(info)]
    subgraph.outputTensorMetadata = [_output_metadata(info)]
    model = md.ModelMetadataT()
    model.name, model.description = name, description
    model.author, model.license = "edgeship", None
    model.subgraphMetadata = [subgraph]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), _IDENTIFIER)
    return bytes(builder.Output())


def append_associated_files(data: bytes, files: dict[str, bytes]) -> bytes:
    """Append files as a zip archive after the FlatBuffer (how TFLite packs associated files): the
    interpreter ignores trailing bytes, metadata readers open the tail as a zip."""
    buffer = io.BytesIO(data)
    buffer.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, content in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), content)
    return buffer.getvalue()


def read_associated_files(data: bytes) -> dict[str, bytes]:
    """The files packed after a TFLite FlatBuffer ({} when there are none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}


def read_metadata(buffer: bytes):
    """Parse a `TFLITE_METADATA` buffer into the schema's object API (for tests and inspection)."""
    if not md.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0):
        raise ValueError("not a TFLite model-metadata buffer (no 'M001' identifier)")
    return md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAs(buffer, 0))
