"""What a backbone is, separate from the registry of them, so that hub.py and backbones.py share it
without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgeship.core.errors import BackboneError

BACKBONE_LAYER = "backbone"  # the name of the backbone sub-model inside every classifier
HUB_PREFIX = "hub:"


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    default_size: int
    weights_source: str  # what `--weights imagenet` means for it
    description: str
    build: Callable[..., object]  # (input_shape, weights, **options) -> keras.Model returning features
    options: dict = field(default_factory=dict)
    min_size: int = 32

    def input_size(self, image_size: int | None) -> int:
        """The square input size to use: IMAGE_SIZE or the default, refused below the minimum."""
        size = image_size or self.default_size
        if size < self.min_size:
            raise BackboneError(f"{self.name} needs inputs of at least {self.min_size} px, got --image-size {size}")
        return size
