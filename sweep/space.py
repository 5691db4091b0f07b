"""What a sweep may choose from: architectures (backbone, width, input size, fine-tuned layers) times precisions.

A space is a TOML file or a named preset. Backbones come from the backbone registry and precisions from the
format registry (`int8` -> tflite_int8, `float16` -> tflite_fp16, `float32` -> tflite; a format name such as
`onnx_int8` works too), so a new registration is searchable without a change here.

    precisions = ["int8", "float32"]
    [[backbones]]
    name = "small_cnn"
    alpha = [0.5, 1.0]
    image_size = [16, 24, 32]
    [[backbones]]
    name = "mobilenet_v2"
    alpha = [0.35]
    image_size = [32, 48]
    weights = "none"              # imagenet (the default for backbones that have it) needs the internet once
    fine_tune_layers = [0, 20]    # pretrained backbones only: 0 trains the head alone
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeship.core.formats import ExportFormat
from edgeship.export.formats import FORMATS
from edgeship.runtime.errors import UsageError

# Presets, by device class. `default`: phones and Raspberry-Pi-class boards (ImageNet-pretrained mobile backbones
# at the input sizes such apps use). `tiny`: microcontroller-sized models trained from scratch on small images
# (the demo digits); needs no download.
PRESETS = {
    "default": {"precisions": ["int8", "float16", "float32"], "backbones": [
        {"name": "mobilenet_v2", "alpha": [0.35, 0.5, 0.75, 1.0], "image_size": [96, 128, 160, 224],
         "weights": "imagenet", "fine_tune_layers": [0, 20]},
        {"name": "mobilenet_v3_small", "alpha": [0.75, 1.0], "image_size": [96, 128, 160, 224],
         "weights": "imagenet", "fine_tune_layers": [0, 20]},
        {"name": "efficientnet_b0", "image_size": [224], "weights": "imagenet", "fine_tune_layers": [0, 20]}]},
    "tiny": {"precisions": ["int8", "float32"], "backbones": [
        {"name": "small_cnn", "alpha": [0.25, 0.5, 1.0], "image_size": [16, 24, 32]},
        {"name": "mobilenet_v2", "alpha": [0.35], "image_size": [32, 48], "weights": "none"}]},
}
SPACE_FILE_FORMAT = "tflite"  # a space's precisions name the registered formats of this file format
_KEYS = {"name", "alpha", "image_size", "weights", "fine_tune_layers"}


@dataclass(frozen=True, order=True)
class Architecture:
    """One model to build and train: what the weights do not change (latency, size, static cost) is fixed here."""

    backbone: str
    image_size: int
    alpha: float | None = None
    weights: str = "none"
    fine_tune_layers: int = 0  # pretrained backbones: top layers phase 2 unfreezes (0: the head alone)

    @property
    def key(self) -> str:
        """A file-name-safe id, stable across runs and machines: the trial's run directory is SWEEP/trials/KEY."""
        parts = [self.backbone, f"{self.image_size}px"]
        if self.alpha is not None:
            parts.append(f"a{self.alpha:g}")
        if self.weights != "none":
            parts.append(Path(self.weights).stem if self.weights != "imagenet" else "imagenet")
        if self.fine_tune_layers:
            parts.append(f"ft{self.fine_tune_layers}")
        return "-".join(parts).replace(":", "_").replace("/", "_")

    @property
    def cost_key(self) -> str:
        """What the untrained cost depends on (backbone, input size, width): candidates that differ only in their
        weights or fine-tuned layers are measured once."""
        return Architecture(self.backbone, self.image_size, self.alpha).key

    @property
    def pretrained(self) -> bool:
        return self.weights not in ("none", "", "random")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Architecture:
        return cls(**{k: data[k] for k in ("backbone", "image_size", "alpha", "weights", "fine_tune_layers")})


@dataclass(frozen=True)
class Space:
    name: str  # the preset's name or the file's path
    architectures: tuple[Architecture, ...]
    formats: tuple[str, ...]  # format registry names, one per precision

    def to_json(self) -> dict:
        return {"name": self.name, "formats": list(self.formats),
                "architectures": [a.to_json() for a in self.architectures]}


def precision_format(precision: str) -> ExportFormat:
    """The registered format a precision names (the TFLite format of that precision: int8, float16, float32), or
    the format itself by name; only formats that run on a device."""
    by_precision = {f.precision: f for f in reversed(FORMATS.values()) if f.file_format == SPACE_FILE_FORMAT}
    fmt = FORMATS.get(precision) or by_precision.get(precision)
    if fmt is None or not fmt.on_device:
        choices = ", ".join([*sorted(by_precision), *(n for n, f in FORMATS.items() if f.on_device)])
        raise UsageError(f"precision {precision!r}: not a precision or device format; choose from {choices}")
    return fmt


def load_space(space: str | Path = "default", trust_code: bool = False) -> Space:
    """A preset by name, or a TOML file as in this module's docstring; every entry checked before any work.
    A file's `hub:` backbone is a SavedModel whose graph runs when it is built: refused unless TRUST_CODE."""
    if str(space) in PRESETS:
        return _parse(PRESETS[str(space)], str(space))
    path = Path(space)
    if not path.is_file():
        raise UsageError(f"{space}: no such space file; --space takes {', '.join(PRESETS)} or a .toml file")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a TOML space file ({exc})") from None
    if not trust_code:
        _refuse_hub_entries(data, path)
    return _parse(data, str(path))


def _refuse_hub_entries(data: dict, path: Path) -> None:
    from edgeship.core.errors import UntrustedCodeError

    entries = data.get("backbones") if isinstance(data, dict) else None
    hub = [e["name"] for e in entries or () if isinstance(e, dict) and str(e.get("name", "")).startswith("hub:")]
    if hub:
        raise UntrustedCodeError(f"{path}: backbone {hub[0]} is a TF-Hub SavedModel, whose graph runs when it is "
                                 f"loaded; pass --trust-code (Python: SweepOptions(trust_code=True)) only if you "
                                 f"trust where it comes from")


def _as_list(value, what: str, source: str) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise UsageError(f"{source}: {what} is an empty list")
    return values


def _parse(data: dict, source: str) -> Space:
    from edgeship.train.backbones import get_backbone
    from edgeship.train.limits import LIMITS

    unknown = set(data) - {"precisions", "backbones"}
    if unknown or not data.get("backbones"):
        raise UsageError(f"{source}: a space has `precisions` and [[backbones]] tables"
                         + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
    formats = tuple(dict.fromkeys(precision_format(p).name for p in _as_list(data.get("precisions", ["int8"]),
                                                                              "precisions", source)))
    found = []
    for entry in data["backbones"]:
        extra = set(entry) - _KEYS
        if extra or "name" not in entry:
            raise UsageError(f"{source}: a [[backbones]] entry takes {', '.join(sorted(_KEYS))}"
                             + (f" (unknown: {', '.join(sorted(extra))})" if extra else " (name is missing)"))
        spec = get_backbone(entry["name"])
        weights = str(entry.get("weights", "imagenet" if spec.pretrained else "none"))
        alphas = _as_list(entry.get("alpha", [None]), "alpha", source)
        for alpha in alphas:
            spec.check_options(weights, alpha)
            LIMITS["alpha"].check(alpha)
        tuned = _as_list(entry.get("fine_tune_layers", [0]), "fine_tune_layers", source)
        if any(tuned) and weights in ("none", "random"):
            raise UsageError(f"{source}: {entry['name']}: fine_tune_layers needs pretrained weights (weights = "
                             f"\"imagenet\" or a file); from scratch the whole model trains")
        sizes = _as_list(entry.get("image_size", [spec.default_size]), "image_size", source)
        for size in sizes:
            LIMITS["image_size"].check(size)
            spec.input_size(size)
        found += [Architecture(entry["name"], int(size), None if alpha is None else float(alpha), weights, int(layers))
                  for size, alpha, layers in itertools.product(sizes, alphas, tuned)]
    return Space(source, tuple(dict.fromkeys(found)), formats)
