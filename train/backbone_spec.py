"""What a backbone is, separate from the registry of them, so that hub.py and backbones.py share it
without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgeship.core.errors import BackboneError

BACKBONE_LAYER = "backbone"  # the name of the backbone sub-model inside every classifier
HUB_PREFIX = "hub:"
_REGISTRY_VIEW: dict = {}  # backbones.BACKBONES, shared here so a refusal can list the alternatives


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    default_size: int
    weights_source: str  # what `--weights imagenet` means for it
    description: str
    build: Callable[..., object]  # (input_shape, weights, **options) -> keras.Model returning features
    options: dict = field(default_factory=dict)  # what it takes besides shape and weights, with defaults (alpha)
    min_size: int = 32
    pretrained: bool = True  # --weights imagenet means something for it

    def check_options(self, weights: str | None, alpha: float | None) -> None:
        """Refuse, before any work, options this backbone would silently ignore or fail on late."""
        if alpha is not None and "alpha" not in self.options:
            takes = ", ".join(sorted(n for n, s in _REGISTRY_VIEW.items() if "alpha" in s.options)) or "none"
            raise BackboneError(f"--alpha does nothing for {self.name} (it has no width multiplier); backbones "
                                f"that take it: {takes}")
        if not self.pretrained and weights not in (None, "", "none", "random"):
            raise BackboneError(f"{self.name} has no pretrained weights, so --weights {weights} cannot apply; use "
                                f"--weights none, or a backbone with ImageNet weights (mobilenet_v2, ...)")

    def input_size(self, image_size: int | None) -> int:
        """The square input size to use: IMAGE_SIZE or the default, refused below the minimum."""
        size = image_size or self.default_size
        if size < self.min_size:
            raise BackboneError(f"{self.name} needs inputs of at least {self.min_size} px, got --image-size {size}")
        return size
