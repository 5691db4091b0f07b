"""The TensorFlow predictor: a `.keras` model or a SavedModel behind the runtime's Predictor contract.

Workstation only (TensorFlow is imported when a model is loaded). It honours the bundle's safe-mode record,
so a TF-Hub bundle (a TFSMLayer that Keras reloads only with safe_mode=False) loads wherever a bundle does:
parity, `gate --reference`, bench and explain.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np
from edgeship.runtime.classifier import Classifier, class_probabilities
from edgeship.runtime.errors import ModelLoadError
from edgeship.runtime.spec import MANIFEST_NAME, ArtifactRecord, Bundle, ModelInfo

from .tfenv import captured_output, import_keras


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


class TensorFlowPredictor:
    """`predict_proba(pixels)` for a `.keras` file or a SavedModel directory, batched like Keras' predict."""

    session = None  # no interpreter details to diagnose (quantization, input dtype)
    threads = None  # TensorFlow's own thread pools

    def __init__(self, call, implementation: str, name: str = "keras", info: ModelInfo | None = None):
        self._call = call
        self.implementation = implementation
        self.name = name
        self.info = info

    @property
    def runtime(self) -> str:
        return self.implementation

    def predict_proba(self, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
        batches = [np.asarray(self._call(pixels[i : i + batch_size].astype(np.float32)))
                   for i in range(0, len(pixels), batch_size)]
        return class_probabilities(np.concatenate(batches, axis=0))

    @classmethod
    def load_keras(cls, path: Path, safe_mode: bool = True, **named) -> "TensorFlowPredictor":
        _, keras = import_keras()
        model = load_keras_model(path, safe_mode)
        return cls(lambda x: model(x, training=False), f"keras {keras.__version__}", **named)

    @classmethod
    def load_saved_model(cls, path: Path, safe_mode: bool = True, **named) -> "TensorFlowPredictor":  # noqa: ARG003
        tf, _ = import_keras()
        with captured_output():
            loaded = tf.saved_model.load(str(path))
        if "serving_default" not in loaded.signatures:
            raise ModelLoadError(f"{path}: SavedModel has no serving_default signature")
        signature = loaded.signatures["serving_default"]

        def call(x):
            outputs = signature(tf.constant(x))
            return next(iter(outputs.values())).numpy()

        return cls(call, f"tensorflow {tf.__version__} (SavedModel)", **named)


LOADERS = {"keras": TensorFlowPredictor.load_keras, "tensorflow": TensorFlowPredictor.load_saved_model}


def open_predictor(path: str | Path, artifact: str | None = None, info: ModelInfo | None = None, hints=None):
    """A Predictor for anything a user may name: a run or bundle directory (ARTIFACT, default the first
    this machine runs), a `.tflite`/`.onnx` file, a `.keras` file or a SavedModel directory. TensorFlow
    formats honour the bundle's safe-mode record; their labels come from the bundle beside them, or INFO.
    HINTS (runtime.foreign.ModelHints) describe a .tflite/.onnx made elsewhere."""
    path = Path(path)
    bundle_dir = bundle_dir_of(path)
    if bundle_dir is not None and path.is_dir() and not is_saved_model(path):
        bundle = Bundle.load(bundle_dir)
        record = bundle.artifact(artifact) if artifact else None
        if record is not None and record.backend in LOADERS:
            bundle.verify_artifact(bundle_dir, record)
            return load_artifact(bundle, bundle_dir, record)
        return Classifier.load(bundle_dir, artifact=artifact)
    if path.suffix == ".keras" or is_saved_model(path):
        bundle = Bundle.load(path.parent) if (path.parent / MANIFEST_NAME).is_file() else None
        info = bundle.info if bundle is not None else info
        if info is None:
            raise ModelLoadError(f"{path}: a .keras model needs an edgeship.json beside it, or a non-Keras model on "
                                 f"the other side, to know its labels and input size")
        record = bundle.record_for_file(path.name) if bundle is not None else None
        if record is not None:
            bundle.verify_artifact(path.parent, record)
        safe = keras_safe_mode(bundle) if bundle is not None else True
        loader = LOADERS["keras" if path.suffix == ".keras" else "tensorflow"]
        return loader(path, safe, name=record.name if record else path.name, info=info)
    return Classifier.load(path, hints=hints)


def load_artifact(bundle: Bundle, directory: Path, record: ArtifactRecord):
    """The Predictor for one artifact record of BUNDLE: TensorFlow for keras/saved_model (with the bundle's
    safe-mode record), the device runtime for everything else."""
    if record.backend in LOADERS:
        return LOADERS[record.backend](directory / record.file, keras_safe_mode(bundle), name=record.name,
                                       info=bundle.info)
    return Classifier.load(directory, artifact=record.name)


def reference_predictor(model, info: ModelInfo, name: str = "keras") -> "TensorFlowPredictor":
    """The Keras model already in memory as the parity reference (Keras' own batched predict)."""
    _, keras = import_keras()
    return TensorFlowPredictor(lambda x: model.predict(x, verbose=0), f"keras {keras.__version__}", name, info)


def bundle_dir_of(path: Path) -> Path | None:
    """The bundle directory PATH names (a bundle, or a run holding bundle/), else None."""
    for candidate in (path, path / "bundle"):
        if candidate.is_dir() and (candidate / MANIFEST_NAME).is_file():
            return candidate
    return None


def is_saved_model(path: Path) -> bool:
    return path.is_dir() and (path / "saved_model.pb").is_file()


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
