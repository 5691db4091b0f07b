"""The model-bundle contract: `edgeship.json` and the input spec embedded in every artifact.

A bundle is a directory holding `edgeship.json` plus the artifacts it lists. The same input spec and
labels are embedded in each `.tflite` / `.onnx`, so a lone file copied to a device is self-describing.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IntegrityError, ModelLoadError
from .fileio import (NotRegularFile, atomic_write_json, read_json, read_regular_file, sha256_bytes, tree_digest)

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
# Schema 1 called PIL's antialiased bilinear "bilinear"; schema 2 gives that name to the phone's resize (see
# runtime.preprocess). A schema-1 bundle keeps the resize it was trained with, and is written back as it was.
_RESIZE_NAMES_BY_SCHEMA = {1: {"bilinear": "bilinear-antialias"}}
MANIFEST_NAME = "edgeship.json"
EMBEDDED_KEY = "edgeship"  # TFLite metadata name and ONNX metadata_props key
TASKS = ("multiclass", "binary")
# input.resize names one of these (runtime.preprocess.RESIZERS implements each). "bilinear" is what phone apps
# compute; the PIL filters antialias when shrinking (bilinear-antialias was the default before schema 2).
RESIZE_METHODS = ("bilinear", "bilinear-antialias", "nearest", "bicubic", "area", "lanczos")
# Artifact names and file names are identifiers inside the bundle folder: a name is used to build paths (explore's
# overlays, bench's rows), so "../../x" in someone else's edgeship.json must never reach the file system.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}")
MAX_ARTIFACT_BYTES = 4 << 30  # a model file larger than this is not an edge model; refused before reading


def check_safe_name(value, what: str, source: str) -> str:
    """VALUE if it is a plain name (letters, digits, _ . - @; not '.', '..' or a path), else ModelLoadError."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or value in (".", "..") or ".." in value:
        raise ModelLoadError(f"{source}: {what} {str(value)[:80]!r} is not a plain name inside the bundle "
                             f"(letters, digits, _ . - only); the bundle was edited by hand or made elsewhere")
    return value


def range_normalization(value_range: tuple[float, float]) -> tuple[float, float]:
    """(mean, std) that map 0-255 pixels onto VALUE_RANGE as (pixel - mean) / std: (0, 1) for 0-255,
    (127.5, 127.5) for -1..1. The runtime applies it to models made elsewhere; export writes it into the
    standard TFLite metadata, where MediaPipe applies it."""
    low, high = value_range
    std = 255.0 / (high - low)
    return -low * std, std


@dataclass(frozen=True)
class InputSpec:
    """What the artifact expects and how the runtime must prepare pixels for it.

    edgeship's own models normalize inside the graph, so they take RGB pixels in 0-255 (value_range). A
    model made elsewhere may expect (pixel - mean) / std per channel, e.g. -1..1: `mean`/`std` say so
    (from its standard metadata, or from --input-range / --mean / --std) and the runtime applies them.
    """

    height: int
    width: int
    channels: int = 3
    color: str = "RGB"
    value_range: tuple[float, float] = (0.0, 255.0)
    resize: str = "bilinear"
    mean: tuple[float, ...] | None = None  # None: derived from value_range
    std: tuple[float, ...] | None = None

    def to_dict(self, schema_version: int = SCHEMA_VERSION) -> dict[str, Any]:
        data = asdict(self)
        data["value_range"] = list(self.value_range)
        for key in ("mean", "std"):  # absent for edgeship's models, so their digests stay what they were
            if data[key] is None:
                del data[key]
            else:
                data[key] = list(data[key])
        written = {new: old for old, new in _RESIZE_NAMES_BY_SCHEMA.get(schema_version, {}).items()}
        data["resize"] = written.get(self.resize, self.resize)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], schema_version: int = SCHEMA_VERSION) -> "InputSpec":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "resize" in known:
            known["resize"] = _RESIZE_NAMES_BY_SCHEMA.get(schema_version, {}).get(known["resize"], known["resize"])
        elif schema_version in _RESIZE_NAMES_BY_SCHEMA:
            known["resize"] = "bilinear-antialias"  # schema 1's default
        if "value_range" in known:
            known["value_range"] = tuple(float(v) for v in known["value_range"])
        for key in ("mean", "std"):
            if known.get(key) is not None:
                known[key] = tuple(float(v) for v in known[key])
        spec = cls(**known)
        problem = spec.problem()
        if problem:
            raise ValueError(problem)
        return spec

    def problem(self) -> str | None:
        """What makes this spec unusable (an input spec read from someone else's file), or None."""
        import math

        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8192:
                return f"input {name} {value!r} is not a whole number of pixels from 1 to 8192"
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            return f"input channels {self.channels!r} is not 1 or 3"
        if self.resize not in RESIZE_METHODS:
            return f"unknown resize method {self.resize!r}; expected one of {', '.join(RESIZE_METHODS)}"
        low, high = self.value_range if len(self.value_range) == 2 else (math.nan, math.nan)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            return f"value_range {list(self.value_range)} is not two finite numbers, low < high"
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and (len(values) not in (1, self.channels)
                                       or not all(math.isfinite(v) for v in values)):
                return f"{key} {list(values)} is not 1 or {self.channels} finite number(s)"
        if self.std is not None and any(v == 0 for v in self.std):
            return f"std {list(self.std)} holds a zero"
        return None

    def normalization(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean, std) per channel that map 0-255 pixels onto the model's input, or None when the model
        takes the pixels as they are (edgeship's models: value range 0-255)."""
        if self.mean is not None and self.std is not None:
            mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        else:
            mean, std = (np.float32(v) for v in range_normalization(self.value_range))
        if np.all(mean == 0) and np.all(std == 1):
            return None
        return mean, std


@dataclass(frozen=True)
class ModelInfo:
    """Labels, task and input spec: the part every artifact carries inside itself."""

    labels: tuple[str, ...]
    input: InputSpec
    task: str = "multiclass"
    unknown_threshold: float | None = None
    schema_version: int = SCHEMA_VERSION  # what the bundle was written with; it is written back the same way

    def __post_init__(self):
        if self.task not in TASKS:
            raise ModelLoadError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if len(self.labels) < 2:
            raise ModelLoadError("a classifier needs at least two labels")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "labels": list(self.labels),
            "task": self.task,
            "input": self.input.to_dict(self.schema_version),
            "unknown_threshold": self.unknown_threshold,
        }

    def digest(self) -> str:
        """sha256 of labels, task, input spec and threshold: the report binds its figures to it."""
        return sha256_bytes(json.dumps(self.to_dict(), sort_keys=True).encode("utf-8"))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model") -> "ModelInfo":
        version = data.get("schema_version", SCHEMA_VERSION)
        if version not in READABLE_SCHEMA_VERSIONS:
            raise ModelLoadError(f"{source}: schema_version {version!r} is not supported (this edgeship reads "
                                 f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))})")
        threshold = data.get("unknown_threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0.0 <= threshold <= 1.0):
            raise ModelLoadError(f"{source}: unknown_threshold {threshold!r} is not a probability from 0 to 1")
        if not isinstance(data.get("labels"), list) or not isinstance(data.get("input"), dict):
            raise ModelLoadError(f"{source}: malformed edgeship metadata (labels must be a list, input an object)")
        try:
            return cls(
                labels=tuple(str(label) for label in data["labels"]),
                input=InputSpec.from_dict(data["input"], version),
                task=data.get("task", "multiclass"),
                unknown_threshold=data.get("unknown_threshold"),
                schema_version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{source}: malformed edgeship metadata ({exc})") from exc


@dataclass
class ArtifactRecord:
    """One exported artifact in `edgeship.json`. `name` is the format registry's row (tflite_int8), `format`
    the file format (tflite, onnx, keras, saved_model), `backend` what runs it (tflite, onnxruntime, keras,
    tensorflow). `sha256` binds the record to the bytes; `model_sha256` to the model.keras it came from."""

    name: str
    file: str
    format: str
    precision: str
    backend: str
    status: str = "ok"  # ok | failed
    sha256: str | None = None
    model_sha256: str | None = None
    size_bytes: int | None = None
    convert_seconds: float | None = None
    versions: dict[str, str] | None = None
    io: str | None = None  # tflite_int8's input/output type
    error: str | None = None
    replaced_by_hand: bool = False
    layers: list[dict] | None = None  # int8: per-layer quantization error, worst first (export's diagnosis)
    quantization: dict[str, Any] | None = None  # int8 under --max-drop: the calibration, float layers and trials
    extra: dict[str, Any] = field(default_factory=dict)  # keys a newer edgeship wrote: kept, written back

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        if not self.replaced_by_hand:
            data.pop("replaced_by_hand")
        return {**self.extra, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = MANIFEST_NAME) -> "ArtifactRecord":
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("name", "file")):
            raise ModelLoadError(f"{source}: malformed artifact record {str(data)[:80]!r}")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "extra"}
        known.setdefault("format", Path(data["file"]).suffix.lstrip(".") or data["name"])
        known.setdefault("precision", "?")
        known.setdefault("backend", known["format"])
        check_safe_name(data["name"], "artifact name", source)
        check_safe_name(data["file"], "artifact file", source)
        return cls(**known, extra={k: v for k, v in data.items() if k not in cls.__dataclass_fields__})


def _plain_bytes(path: Path) -> bytes:
    return read_regular_file(path, MAX_ARTIFACT_BYTES, follow_links=False)


def _sha256_plain(path: Path) -> str:
    return sha256_bytes(_plain_bytes(path))


def _digest_of(path: Path, record: ArtifactRecord, read):
    """READ(PATH) for an artifact file, its failures as one IntegrityError line naming the file and the fix."""
    if not path.exists() and not path.is_symlink():
        raise IntegrityError(f"{path}: artifact {record.name!r} is listed in {MANIFEST_NAME} but missing; "
                             f"re-run `edgeship export`")
    try:
        return read(path)
    except NotRegularFile as exc:
        raise IntegrityError(f"{exc}; artifacts must be regular files inside the bundle (re-run "
                             f"`edgeship export`)") from None
    except OSError as exc:
        raise IntegrityError(f"{path}: cannot read artifact ({exc.strerror or exc})") from None


@dataclass
class Bundle:
    """`edgeship.json`: model info, provenance and the list of exported artifacts."""

    info: ModelInfo
    provenance: dict[str, Any] = field(default_factory=dict)
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    keras_model: str | None = "model.keras"
    split_manifest: str | None = "splits.csv"

    def to_dict(self) -> dict[str, Any]:
        data = self.info.to_dict()
        data.update(
            keras_model=self.keras_model,
            split_manifest=self.split_manifest,
            provenance=self.provenance,
            artifacts=[record.to_json() for record in self.artifacts],
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = MANIFEST_NAME) -> "Bundle":
        if data.get("schema_version") not in READABLE_SCHEMA_VERSIONS:  # required here (embedded copies may omit it)
            raise ModelLoadError(f"{source}: schema_version {data.get('schema_version')!r} is not supported (this "
                                 f"edgeship reads {', '.join(map(str, READABLE_SCHEMA_VERSIONS))})")
        for key in ("keras_model", "split_manifest"):
            if data.get(key) is not None:
                check_safe_name(data[key], key, source)
        return cls(
            info=ModelInfo.from_dict(data, source),
            provenance=dict(data.get("provenance") or {}),
            artifacts=[ArtifactRecord.from_json(r, source) for r in data.get("artifacts") or []],
            keras_model=data.get("keras_model"),
            split_manifest=data.get("split_manifest"),
        )

    def save(self, directory: str | Path) -> Path:
        return atomic_write_json(Path(directory) / MANIFEST_NAME, self.to_dict())

    @classmethod
    def load(cls, directory: str | Path) -> "Bundle":
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ModelLoadError(f"{directory}: no {MANIFEST_NAME} here; is this an edgeship bundle directory?")
        return cls.from_dict(read_json(path, ModelLoadError, "cannot read bundle manifest"), str(path))

    def artifact(self, name: str) -> ArtifactRecord:
        for record in self.artifacts:
            if record.name == name:
                return record
        names = ", ".join(r.name for r in self.artifacts) or "none"
        raise ModelLoadError(f"bundle has no artifact named {name!r} (it has: {names})")

    def verify_artifact(self, directory: str | Path, record: ArtifactRecord) -> str:
        """The sha256 of the artifact's bytes on disk, after checking it against the record: a file swapped
        in from another run, edited, or converted from an older model.keras is refused, never used."""
        path = Path(directory) / record.file
        if path.is_dir() and not path.is_symlink():
            return self.check_digest(path, record, _digest_of(path, record, lambda p: tree_digest(p)[1]))
        return self.check_digest(path, record, _digest_of(path, record, _sha256_plain))

    def read_artifact(self, directory: str | Path, record: ArtifactRecord) -> bytes:
        """The artifact's bytes, read once through a descriptor, checked against the record, and handed on:
        what is hashed is what gets loaded (a file swapped between a check and a second open is never run)."""
        path = Path(directory) / record.file
        data = _digest_of(path, record, _plain_bytes)
        self.check_digest(path, record, sha256_bytes(data))
        return data

    def check_digest(self, path: Path, record: ArtifactRecord, digest: str) -> str:
        """DIGEST (of bytes already read from PATH) if it is RECORD's, from RECORD's model.keras; else IntegrityError."""
        if record.sha256 != digest:
            raise IntegrityError(f"{path}: sha256 {digest[:12]} does not match the bundle record "
                                 f"({str(record.sha256)[:12]}): the file changed after export; "
                                 f"re-run `edgeship export`")
        source, current = record.model_sha256, self.provenance.get("model_sha256")
        if source is not None and current is not None and source != current:
            raise IntegrityError(f"{path}: artifact {record.name!r} was converted from an older model.keras "
                                 f"(sha256 {source[:12]}, now {current[:12]}): it is stale; re-run `edgeship export`")
        return digest

    def record_for_file(self, file_name: str) -> ArtifactRecord | None:
        return next((r for r in self.artifacts if r.file == file_name), None)

    def upsert_artifact(self, record: ArtifactRecord) -> None:
        self.artifacts = [r for r in self.artifacts if r.name != record.name] + [record]
