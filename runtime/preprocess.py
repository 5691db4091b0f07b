"""The one preprocessing function. Training, parity evaluation and the device all call it.

It decodes, applies EXIF orientation, converts any mode to RGB and resizes. Normalization is *not*
here: it is a layer inside the model, so every artifact takes uint8-range RGB pixels.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .spec import InputSpec

ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Larger images are refused from their header, before decoding (a 20000x20000 PNG needs 1.2 GB decoded).
MAX_PIXELS = int(os.environ.get("EDGESHIP_MAX_PIXELS", 64_000_000))
Image.MAX_IMAGE_PIXELS = None  # our own limit applies, with a clear message instead of a PIL warning/error

_RESAMPLERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}


def _describe(source: ImageInput) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (L, P, RGBA, I;16, CMYK, ...) to 8-bit RGB; alpha is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I") or image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if array.max(initial=0.0) > 255 else 1.0
        return Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an HWC image array with 1, 3 or 4 channels, got shape {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and float(np.nanmax(array)) <= 1.0:
            array = array * 255.0
        array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return Image.fromarray(array)


def load_image(source: ImageInput) -> Image.Image:
    """Decode a path, bytes, PIL image or HWC array into an upright RGB PIL image."""
    if isinstance(source, np.ndarray):
        return _to_rgb(_array_to_image(source))
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source) or source)
    try:
        if isinstance(source, (bytes, bytearray)):
            if not source:
                raise ImageError("<bytes>: empty image data")
            image = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if path.is_file() and path.stat().st_size == 0:
                raise ImageError(f"{path}: zero-byte file, not an image")
            image = Image.open(path)
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ImageError(f"{_describe(source)}: {width}x{height} is {width * height:,} pixels, over the "
                             f"{MAX_PIXELS:,} limit (downscale it, or raise EDGESHIP_MAX_PIXELS)")
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return _to_rgb(image)
    except ImageError:
        raise
    except FileNotFoundError as exc:
        raise ImageError(f"{_describe(source)}: no such file") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{_describe(source)}: cannot decode image ({exc})") from exc


def prepare_image(source: ImageInput, spec: InputSpec) -> np.ndarray:
    """Return the model-input tensor for one image: HWC uint8 RGB at the spec's size."""
    image = load_image(source)
    try:
        resample = _RESAMPLERS[spec.resize]
    except KeyError as exc:
        raise ValueError(f"unknown resize method {spec.resize!r}; expected one of {', '.join(_RESAMPLERS)}") from exc
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), resample=resample)
    return np.asarray(image, dtype=np.uint8)


def prepare_batch(sources, spec: InputSpec) -> np.ndarray:
    """Stack prepared images into an NHWC uint8 batch."""
    return np.stack([prepare_image(s, spec) for s in sources]) if len(sources) else np.zeros(
        (0, spec.height, spec.width, spec.channels), np.uint8
    )
