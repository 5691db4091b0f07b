"""The TensorFlow-side formats (`.keras`, SavedModel): converters and embedded metadata.

Running them for parity is `edgeship.core.tensorflow.TensorFlowPredictor`'s job.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgeship.core.formats import export_format


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


@export_format("keras", "model.keras", "float32", "keras",
               "Keras 3 model as trained: the parity reference (loads with safe_mode)")
def keras_file(job) -> bytes:
    """The bundle's `.keras` model as trained (already loaded once with safe_mode by the export)."""
    return Path(job.keras_path).read_bytes()


@export_format("saved_model", "saved_model", "float32", "tensorflow",
               "TensorFlow SavedModel directory, serving_default takes 0-255 RGB (TF Serving, TF.js)",
               embedder=embed_saved_model, default=False)
def saved_model(job) -> Path:
    """A SavedModel directory whose `serving_default` signature takes 0-255 RGB pixels."""
    return Path(job.saved_model())
