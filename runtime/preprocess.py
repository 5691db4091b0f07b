"""The one preprocessing function. Training, parity evaluation and the device all call it.

It decodes, applies EXIF orientation, converts any mode to RGB and resizes. Normalization is *not*
here: it is a layer inside the model, so every artifact takes uint8-range RGB pixels.

The default resize is the phone's: bilinear without antialiasing, sampled as MediaPipe's ImageClassifier
does on the CPU (ImageToTensorCalculator: OpenCV `warpPerspective`, INTER_LINEAR, BORDER_REPLICATE, the
image's corners onto the tensor's corners), bit for bit. PIL's own filters antialias when they shrink, which
no phone pipeline does; they stay available by name (`bilinear-antialias`, `area`, ...).
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

# OpenCV's fixed-point interpolation: source coordinates in 1/32 pixel steps (INTER_BITS = 5), weights that
# sum to 1024 (32 x 32) per output pixel, rounded half up.
_SUBPIXELS = 32
_WEIGHT_SHIFT = 10


def _phone_bilinear(image: Image.Image, width: int, height: int) -> np.ndarray:
    """Bilinear without antialiasing, as MediaPipe's CPU image-to-tensor step computes it: output pixel
    (x, y) samples the source at (x * W / width, y * H / height), quantized to 1/32 pixel, edges replicated."""
    source = np.asarray(image, dtype=np.uint8)
    rows, cols = source.shape[:2]

    def taps(count: int, size: int):
        steps = np.rint(np.arange(count) * (size / count) * _SUBPIXELS).astype(np.int64)
        first = np.minimum(steps // _SUBPIXELS, size - 1)
        return first, np.minimum(first + 1, size - 1), steps % _SUBPIXELS

    x0, x1, fx = taps(width, cols)
    y0, y1, fy = taps(height, rows)
    top, bottom = source[y0].astype(np.int32), source[y1].astype(np.int32)
    wx, wy = fx[None, :, None], fy[:, None, None]
    upper = (_SUBPIXELS - wx) * top[:, x0] + wx * top[:, x1]
    lower = (_SUBPIXELS - wx) * bottom[:, x0] + wx * bottom[:, x1]
    total = (_SUBPIXELS - wy) * upper + wy * lower
    return ((total + (1 << (_WEIGHT_SHIFT - 1))) >> _WEIGHT_SHIFT).astype(np.uint8)


def _pil(filter_: Image.Resampling):
    def resize(image: Image.Image, width: int, height: int) -> np.ndarray:
        return np.asarray(image.resize((width, height), resample=filter_), dtype=np.uint8)
    return resize


# One per name of spec.RESIZE_METHODS (what input.resize in edgeship.json may say; a test keeps the two equal).
RESIZERS = {
    "bilinear": _phone_bilinear,
    "bilinear-antialias": _pil(Image.Resampling.BILINEAR),
    "nearest": _pil(Image.Resampling.NEAREST),
    "bicubic": _pil(Image.Resampling.BICUBIC),
    "area": _pil(Image.Resampling.BOX),
    "lanczos": _pil(Image.Resampling.LANCZOS),
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
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit grey: to 8 bits in bands of rows
        array = np.asarray(image)
        peak = np.nanmax(array) if array.size and array.dtype.kind == "f" else array.max(initial=0)
        scale = np.float32(255.0 / 65535.0 if peak > 255 else 1.0)
        out = np.empty(array.shape[:2], np.uint8)
        for start in range(0, array.shape[0], ROW_BAND):  # a float copy of the whole image was 8 bytes a pixel
            band = np.nan_to_num(array[start:start + ROW_BAND].astype(np.float32) * scale, copy=False)
            out[start:start + ROW_BAND] = np.clip(band, 0, 255, out=band)
        return Image.fromarray(out).convert("RGB")
    return image.convert("RGB")


ROW_BAND = 256  # rows converted at a time from a 16-bit image


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
    try:
        resize = RESIZERS[spec.resize]
    except KeyError as exc:
        raise ValueError(f"unknown resize method {spec.resize!r}; expected one of {', '.join(RESIZERS)}") from exc
    image = load_image(source)
    if image.size != (spec.width, spec.height):
        return resize(image, spec.width, spec.height)
    return np.asarray(image, dtype=np.uint8)


def prepare_batch(sources, spec: InputSpec) -> np.ndarray:
    """Stack prepared images into an NHWC uint8 batch."""
    return np.stack([prepare_image(s, spec) for s in sources]) if len(sources) else np.zeros(
        (0, spec.height, spec.width, spec.channels), np.uint8
    )
