"""The TensorFlow-side formats (`.keras`, SavedModel): converters, metadata and a runner for parity.

They need TensorFlow, so they live in export, never in runtime. The runner offers the runtime
Classifier's `predict_proba` so parity and diagnosis treat them like any other artifact.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np

from edgeship.runtime.classifier import class_probabilities
from edgeship.runtime.errors import ModelLoadError
from edgeship.train.tfenv import captured_output, import_keras


def keras_safe_mode(bundle) -> bool:
    """False only for a bundle whose training used a TF-Hub backbone (a TFSMLayer, refused in safe mode)."""
    return bundle.provenance.get("training", {}).get("keras_safe_mode", True)


def load_keras_model(path: Path, safe_mode: bool = True):
    """Load with Keras' safe_mode unless the bundle says otherwise (see keras_safe_mode); a broken or
    non-Keras file is one ModelLoadError line."""
    _, keras = import_keras()
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such Keras model; run `edgeship train` first")
    try:
        with captured_output():
            return keras.models.load_model(path, safe_mode=safe_mode, compile=False)
    except Exception as exc:  # zip, h5 and deserialization errors all mean "not a usable .keras file"
        raise ModelLoadError(f"{path}: not a loadable Keras model ({str(exc).splitlines()[0][:200]})") from exc


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


class TensorFlowRunner:
    """`predict_proba(pixels)` for a `.keras` file or a SavedModel directory, batched like Keras' predict."""

    session = None  # no interpreter details to diagnose (quantization, input dtype)

    def __init__(self, call, implementation: str):
        self._call = call
        self.implementation = implementation

    def predict_proba(self, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
        batches = [np.asarray(self._call(pixels[i : i + batch_size].astype(np.float32)))
                   for i in range(0, len(pixels), batch_size)]
        return class_probabilities(np.concatenate(batches, axis=0))

    @classmethod
    def load_keras(cls, path: Path, safe_mode: bool = True) -> "TensorFlowRunner":
        _, keras = import_keras()
        model = load_keras_model(path, safe_mode)
        return cls(lambda x: model(x, training=False), f"keras {keras.__version__}")

    @classmethod
    def load_saved_model(cls, path: Path, safe_mode: bool = True) -> "TensorFlowRunner":  # noqa: ARG003
        tf, _ = import_keras()
        with captured_output():
            loaded = tf.saved_model.load(str(path))
        if "serving_default" not in loaded.signatures:
            raise ModelLoadError(f"{path}: SavedModel has no serving_default signature")
        signature = loaded.signatures["serving_default"]

        def call(x):
            outputs = signature(tf.constant(x))
            return next(iter(outputs.values())).numpy()

        return cls(call, f"tensorflow {tf.__version__} (SavedModel)")


RUNNERS = {"keras": TensorFlowRunner.load_keras, "tensorflow": TensorFlowRunner.load_saved_model}


def probe_tensorflow() -> str | None:
    """'tensorflow X.Y.Z' when TensorFlow is installed (without importing it), else None."""
    if importlib.util.find_spec("tensorflow") is None:
        return None
    for distribution in ("tensorflow", "tensorflow-cpu"):
        try:
            return f"tensorflow {importlib.metadata.version(distribution)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "tensorflow"
