"""The TensorFlow-side formats (`.keras`, SavedModel): converters and embedded metadata.

Running them for parity is `edgeship.core.tensorflow.TensorFlowPredictor`'s job.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def keras_file(job) -> bytes:
    """The bundle's `.keras` model as trained (already loaded once with safe_mode by the export)."""
    return Path(job.keras_path).read_bytes()


def saved_model(job) -> Path:
    """A SavedModel directory whose `serving_default` signature takes 0-255 RGB pixels."""
    return Path(job.saved_model())


def embed_saved_model(directory: Path, metadata: dict) -> Path:
    """labels + input spec as `assets/edgeship.json` and `assets/labels.txt` (copied, then written)."""
    staged = Path(str(directory) + ".with-assets")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(directory, staged)
    assets = staged / "assets"
    assets.mkdir(exist_ok=True)
    (assets / "edgeship.json").write_text(json.dumps(metadata, indent=2, ensure_ascii=False), encoding="utf-8")
    (assets / "labels.txt").write_text("".join(f"{label}\n" for label in metadata["labels"]), encoding="utf-8")
    return staged
