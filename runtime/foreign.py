"""Models edgeship did not make: what they need to classify, from their own metadata or from the user.

A latency benchmark needs only tensor shapes; classifying needs class names and the input's normalization.
They come, in this order, from the model's standard TFLite metadata (MediaPipe Model Maker, TF Hub) or its
ONNX `metadata_props`, then from the user's flags (--labels, --input-range, --mean/--std). Nothing is
guessed: what neither gives is a one-line error naming the flag that supplies it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .backends import image_size
from .errors import ModelLoadError, UsageError
from .spec import InputSpec, ModelInfo
from .standard_metadata import read_standard_metadata

logger = logging.getLogger("edgeship")
INPUT_RANGES = {"0,255": (0.0, 255.0), "0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0)}
ONNX_LABEL_KEYS = ("labels", "class_names", "classes")


class ModelInfoMissing(ModelLoadError):
    """A model without edgeship metadata lacks something classifying needs; the message names the flag."""


@dataclass(frozen=True)
class ModelHints:
    """What the user says about a model that does not describe itself. Its own metadata wins over these."""

    labels: tuple[str, ...] | None = None
    value_range: tuple[float, float] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    output_scale: tuple[float, float] | None = None  # (scale, zero point) of an integer output without its own

    @classmethod
    def from_flags(cls, labels_file: str | None = None, input_range: str | None = None,
                   mean: str | None = None, std: str | None = None,
                   output_scale: str | None = None) -> "ModelHints":
        labels = _read_labels(Path(labels_file)) if labels_file else None
        value_range = None
        if input_range is not None:
            key = input_range.replace(" ", "")
            if key not in INPUT_RANGES:
                raise UsageError(f"--input-range {input_range!r}: choose 0,255, 0,1 or -1,1 (or give --mean and --std)")
            value_range = INPUT_RANGES[key]
        if (mean is None) != (std is None):
            raise UsageError("--mean and --std go together (one value, or three for R,G,B)")
        if mean is not None and value_range is not None:
            raise UsageError("give --input-range or --mean/--std, not both")
        means, stds = (_floats(mean, "--mean"), _floats(std, "--std")) if mean is not None else (None, None)
        if stds is not None and any(v == 0 for v in stds):
            raise UsageError("--std must not be 0")
        return cls(labels, value_range, means, stds, _output_scale(output_scale) if output_scale else None)

    @property
    def normalization_given(self) -> bool:
        return self.value_range is not None or self.mean is not None


def _output_scale(text: str) -> tuple[float, float]:
    """--output-scale S[,ZERO_POINT]: how an integer output maps onto probabilities, p = (q - zero) * S."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not values[0] > 0 or any(v != v or abs(v) == float("inf") for v in values):
        raise UsageError(f"--output-scale {text!r}: expected a positive scale and optionally a zero point, e.g. "
                         f"0.00390625 (uint8 softmax) or 0.00390625,-128 (int8 softmax)")
    return values[0], values[1] if len(values) == 2 else 0.0


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected a number or three comma-separated numbers (R,G,B)") from None
    if len(values) not in (1, 3):
        raise UsageError(f"{flag} {text!r}: expected one value or three (R,G,B)")
    return values


def _read_labels(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--labels {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--labels {path}: cannot read it as UTF-8 text ({exc})") from None
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) < 2:
        raise UsageError(f"--labels {path}: expected one class name per line, at least two")
    return labels


def foreign_info(session, path: Path, hints: ModelHints | None) -> ModelInfo:
    """The ModelInfo of a model without edgeship metadata: its own standard metadata first, then HINTS."""
    hints = hints or ModelHints()
    found = _own_metadata(session, path)
    labels = _pick("class names", found.get("labels"), hints.labels, path)
    normalization = found.get("normalization")
    if normalization is not None and hints.normalization_given:
        logger.warning(f"{path.name}: its metadata gives the input normalization; --input-range/--mean/--std ignored")
    height, width = found.get("size") or image_size(session)
    if height <= 0 or width <= 0:
        raise ModelInfoMissing(f"{path}: its input size is open ({session.input_shape}) and its metadata gives none; "
                               f"export it with a fixed size")
    if normalization is not None:
        spec = InputSpec(height, width, mean=normalization[0], std=normalization[1])
    elif hints.mean is not None:
        spec = InputSpec(height, width, mean=hints.mean, std=hints.std)
    elif hints.value_range is not None:
        spec = InputSpec(height, width, value_range=hints.value_range)
    else:
        raise ModelInfoMissing(
            f"{path}: no edgeship metadata embedded in this file and no input normalization in its own metadata; "
            f"pass --input-range 0,255|0,1|-1,1 (or --mean M --std S) saying what pixel values it was trained on")
    outputs = session.output_shape[-1] if session.output_shape else -1
    task = "binary" if outputs == 1 and len(labels) == 2 else "multiclass"
    if outputs > 0 and task == "multiclass" and outputs != len(labels):
        source = "its metadata" if found.get("labels") else "--labels"
        raise ModelInfoMissing(f"{path}: the model has {outputs} outputs but {source} gives {len(labels)} class "
                               f"names; pass a labels file with one name per output")
    if getattr(session, "raw_integer_output", False):
        if hints.output_scale is None:
            raise ModelInfoMissing(
                f"{path}: its output is {session.output_dtype.name} and the model records no scale for it, so its "
                f"values are not probabilities; pass --output-scale S[,ZERO_POINT] (a TFLite-style softmax: "
                f"0.00390625 for uint8, 0.00390625,-128 for int8)")
        session.set_output_quantization(*hints.output_scale)
    return ModelInfo(labels, spec, task, found.get("threshold"))


def _pick(what: str, own, given, path: Path):
    if own is not None:
        if given is not None and tuple(given) != tuple(own):
            logger.warning(f"{path.name}: its metadata names its classes; --labels ignored")
        return tuple(own)
    if given is not None:
        return tuple(given)
    raise ModelInfoMissing(f"{path}: no edgeship metadata embedded in this file and no {what} in its own metadata; "
                           f"pass --labels FILE (one class name per line, in output order)")


def _own_metadata(session, path: Path) -> dict:
    """labels / normalization (mean, std) / size (h, w) / threshold the file itself records."""
    if getattr(session, "backend", None) == "tflite":  # TFLite: the standard metadata
        standard = read_standard_metadata(session.model_bytes, str(path))
        if standard is None:
            return {}
        normalization = ((standard.mean, standard.std) if standard.mean is not None and standard.std is not None
                         else None)
        return {"labels": standard.labels, "normalization": normalization, "size": standard.image_size,
                "threshold": standard.score_threshold}
    props = getattr(session, "metadata_props", None) or {}
    found = {}
    for key in ONNX_LABEL_KEYS:
        if key in props:
            found["labels"] = _parse_list(props[key], path, key, str)
            break
    if "mean" in props and "std" in props:
        found["normalization"] = (tuple(_parse_list(props["mean"], path, "mean", float)),
                                  tuple(_parse_list(props["std"], path, "std", float)))
    return found


def _parse_list(value: str, path: Path, key: str, kind) -> tuple:
    """A metadata_props value: a JSON list, or comma- or newline-separated text."""
    try:
        parsed = json.loads(value)
        items = parsed if isinstance(parsed, list) else [parsed]
    except json.JSONDecodeError:
        items = [v for v in value.replace("\n", ",").split(",") if v.strip()]
    try:
        return tuple(kind(v.strip() if isinstance(v, str) else v) for v in items)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: metadata_props[{key!r}] is not a list of {kind.__name__} ({exc})") from exc
