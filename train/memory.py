"""Refuse a training run that cannot fit in memory before it starts, with the figure, instead of dying in
a TensorFlow out-of-memory traceback an hour in."""

from __future__ import annotations

import os
import re

import numpy as np
from edgeship.runtime.errors import UsageError

MEMORY_LIMIT_ENV = "EDGESHIP_MEMORY_LIMIT"  # bytes (or 512M, 4G): a lower cap than the machine's, for tests
HEADROOM = 0.85  # leave this share of available memory usable; the rest is Python, TensorFlow, the OS


def parse_bytes(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise UsageError(f"{MEMORY_LIMIT_ENV}={text!r}: expected bytes such as 2G, 512M or 1000000")
    return int(float(match.group(1)) * 1024 ** " KMGT".index((match.group(2) or " ").upper()))


def available_memory() -> int | None:
    """Bytes this process may use: EDGESHIP_MEMORY_LIMIT when set, else the kernel's MemAvailable."""
    if os.environ.get(MEMORY_LIMIT_ENV):
        return parse_bytes(os.environ[MEMORY_LIMIT_ENV])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _leaf_output_sizes(model) -> list[int]:
    sizes = []
    for layer in model.layers:
        if getattr(layer, "layers", None):
            sizes += _leaf_output_sizes(layer)
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if shape is not None and all(d is not None for d in shape[1:]):
            sizes.append(int(np.prod(shape[1:])))
    return sizes


def estimate_training_bytes(model, batch_size: int, trains_backbone: bool, eval_images: int) -> int:
    """A rough upper estimate of peak memory: weights with Adam's two moments and gradients; per-layer
    activations kept for backprop (or the largest two, for inference through a frozen backbone); and one
    chunk of decoded evaluation images (uint8 plus a float32 copy): evaluation streams in chunks."""
    sizes = _leaf_output_sizes(model) or [0]
    params = model.count_params() * 4 * 4
    if trains_backbone:
        activations = sum(sizes) * batch_size * 4 * 2
    else:
        activations = sum(sorted(sizes)[-2:]) * batch_size * 4
    height, width = model.input_shape[1:3]
    decoded = eval_images * height * width * 3 * (1 + 4)
    return int(params + activations + decoded)


def check_fits(model, batch_size: int, trains_backbone: bool, eval_images: int) -> int:
    """The estimate in bytes; UsageError when it exceeds the memory available."""
    needed = estimate_training_bytes(model, batch_size, trains_backbone, eval_images)
    available = available_memory()
    if available is not None and needed > available * HEADROOM:
        size = model.input_shape[1]
        raise UsageError(
            f"training at {size} px with batch size {batch_size} needs about {needed / 2**30:.1f} GiB, but "
            f"{available * HEADROOM / 2**30:.1f} GiB is usable here; lower --image-size or --batch-size")
    return needed
