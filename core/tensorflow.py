"""The TensorFlow predictor: a `.keras` model or a SavedModel behind the runtime's Predictor contract.

Workstation only (TensorFlow is imported when a model is loaded). A bundle is data: a `.keras` model loads in
Keras' safe mode, which refuses to deserialize Python (a `Lambda` layer's bytecode, a TF-Hub bundle's
TFSMLayer), unless the user says in so many words that they trust it (`--trust-code`, `trust_code=True`).
Nothing a bundle says about itself (its `keras_safe_mode` record included) switches safe mode off.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
from edgeship.runtime.classifier import Classifier, class_probabilities, inference_batch
from edgeship.runtime.errors import ModelLoadError
from edgeship.runtime.fileio import loads_json
from edgeship.runtime.spec import MANIFEST_NAME, ArtifactRecord, Bundle, ModelInfo

from .errors import UntrustedCodeError
from .tfenv import captured_output, import_keras

TRUST_FLAG = "--trust-code"


def needs_trusted_code(bundle) -> bool:
    """True for a bundle whose training says its model.keras loads only outside safe mode (a TF-Hub backbone's
    TFSMLayer). Only ever used to explain a refusal: the user's flag alone decides."""
    return bundle is not None and bundle.provenance.get("training", {}).get("keras_safe_mode", True) is False


CODE_CLASSES = ("Lambda", "TFSMLayer", "__lambda__")  # what a .keras config deserializes by running Python


CONFIG_MAX_BYTES = 64 << 20  # a .keras config.json of a large functional model is a few MB
ARCHIVE_MAX_BYTES = 8 << 30  # what all members of a .keras archive may unpack to


def archive_config(path: Path):
    """A `.keras` archive's config.json, after checking what its members say they unpack to (a few MB that
    unpack to GBs are refused before anything is read) and how deep it nests. None for a file that is not a
    readable archive (Keras says why when it tries); ModelLoadError for one built to exhaust memory or stack."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            config = next((m for m in members if m.filename == "config.json"), None)
            total = sum(m.file_size for m in members)
            if config is None:
                return None
            if config.file_size > CONFIG_MAX_BYTES or total > ARCHIVE_MAX_BYTES:
                raise ModelLoadError(f"{path}: its members unpack to {total / 2**30:.1f} GiB (config.json "
                                     f"{config.file_size / 2**20:.0f} MiB); not a model edgeship loads")
            raw = archive.read(config)
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    return loads_json(raw, f"{path}: config.json", ModelLoadError)


def archive_holds_code(path: Path) -> bool:
    """Whether a `.keras` archive's config.json names something Keras can only deserialize by running code
    that came with it (a Lambda layer, a lambda function, a TFSMLayer). Read as JSON, without TensorFlow:
    bench decides before it starts a process that would load the model."""
    config = archive_config(path)
    if config is None:
        return False  # not a readable archive: loading it fails on its own, with its own message
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") in CODE_CLASSES:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def refuse_untrusted(path: Path, bundle=None) -> None:
    """UntrustedCodeError for a `.keras` archive that holds code, unless the caller was told to trust it."""
    if archive_holds_code(path):
        raise UntrustedCodeError(_untrusted_message(path, bundle))


def refuse_saved_model(path: Path, trust_code: bool = False) -> None:
    """UntrustedCodeError for a SavedModel directory unless the caller was told to trust it: loading one runs
    its graph's ops (tf.io.write_file, ReadFile, ...), whatever signature is called."""
    if not trust_code:
        raise UntrustedCodeError(f"{path}: a SavedModel runs its own graph when loaded (its ops can read and write "
                                 f"files); pass {TRUST_FLAG} (Python: trust_code=True) only if you trust its author, "
                                 f"or re-export it here with `edgeship export RUN --formats saved_model`")


def _untrusted_message(path: Path, bundle) -> str:
    what = ("a TF-Hub bundle: its model references a SavedModel through a TFSMLayer" if needs_trusted_code(bundle)
            else "it holds Python code (a Lambda layer or a custom object)")
    return (f"{path}: loading this model would run code that came with it ({what}); pass {TRUST_FLAG} "
            f"(Python: trust_code=True) only if you trust its author")


def _refused_in_safe_mode(exc: BaseException) -> bool:
    """Keras' safe mode refusing to deserialize code (a Lambda, a TFSMLayer, a lambda in a config)."""
    text = str(exc)
    return "safe_mode" in text or "unsafe" in text.lower()


def load_keras_model(path: Path, trust_code: bool = False, bundle=None):
    """Load a `.keras` file in Keras' safe mode; with TRUST_CODE (the user's word) without it. A model that
    safe mode refuses is an UntrustedCodeError naming the flag; a broken or non-Keras file one ModelLoadError."""
    _, keras = import_keras()
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such Keras model; run `edgeship train` first")
    if not trust_code:  # also when something in this process switched Keras' own guard off globally
        refuse_untrusted(path, bundle)
    else:
        archive_config(path)  # sizes and nesting are checked whoever wrote it
    from . import qat_layers  # noqa: F401 - registers the layers a quantization-aware model is made of

    try:
        with captured_output():
            return keras.models.load_model(path, safe_mode=not trust_code, compile=False)
    except Exception as exc:  # zip, h5 and deserialization errors all mean "not a usable .keras file"
        if not trust_code and _refused_in_safe_mode(exc):
            raise UntrustedCodeError(_untrusted_message(path, bundle)) from None
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

    def predict_proba(self, pixels: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """BATCH_SIZE images per call (default: up to 64, fewer at large inputs: `inference_batch`)."""
        if batch_size is None:
            spec = self.info.input if self.info is not None else None
            batch_size = inference_batch(spec.height, spec.width, most=64) if spec is not None else 64
        batches = [np.asarray(self._call(pixels[i : i + batch_size].astype(np.float32)))
                   for i in range(0, len(pixels), batch_size)]
        return class_probabilities(np.concatenate(batches, axis=0))

    @classmethod
    def load_keras(cls, path: Path, trust_code: bool = False, bundle=None, **named) -> "TensorFlowPredictor":
        _, keras = import_keras()
        model = load_keras_model(path, trust_code, bundle)
        return cls(lambda x: model(x, training=False), f"keras {keras.__version__}", **named)

    @classmethod
    def load_saved_model(cls, path: Path, trust_code: bool = False, bundle=None,  # noqa: ARG003
                         **named) -> "TensorFlowPredictor":
        """A SavedModel's serving signature. Its graph is code (an op may read or write any file), so it loads
        only with TRUST_CODE: the user's word, or export's own parity of the SavedModel it just converted."""
        refuse_saved_model(path, trust_code)
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


def open_predictor(path: str | Path, artifact: str | None = None, info: ModelInfo | None = None, hints=None,
                   trust_code: bool = False):
    """A Predictor for anything a user may name: a run or bundle directory (ARTIFACT, default the first
    this machine runs), a `.tflite`/`.onnx` file, a `.keras` file or a SavedModel directory. A `.keras` model
    loads in safe mode unless TRUST_CODE; labels come from the bundle beside it, or INFO.
    HINTS (runtime.foreign.ModelHints) describe a .tflite/.onnx made elsewhere."""
    path = Path(path)
    bundle_dir = bundle_dir_of(path)
    if bundle_dir is not None and path.is_dir() and not is_saved_model(path):
        bundle = Bundle.load(bundle_dir)
        record = bundle.artifact(artifact) if artifact else None
        if record is not None and record.backend in LOADERS:
            bundle.verify_artifact(bundle_dir, record)
            return load_artifact(bundle, bundle_dir, record, trust_code)
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
        loader = LOADERS["keras" if path.suffix == ".keras" else "tensorflow"]
        return loader(path, trust_code, bundle, name=record.name if record else path.name, info=info)
    return Classifier.load(path, hints=hints)


def load_artifact(bundle: Bundle, directory: Path, record: ArtifactRecord, trust_code: bool = False):
    """The Predictor for one artifact record of BUNDLE: TensorFlow for keras/saved_model (safe mode unless
    TRUST_CODE), the device runtime for everything else."""
    if record.backend in LOADERS:
        return LOADERS[record.backend](directory / record.file, trust_code, bundle, name=record.name,
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
