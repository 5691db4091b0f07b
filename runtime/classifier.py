"""`Classifier`: load any edgeship artifact (or a bundle directory) and classify images with it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .backends import BACKENDS, backend_for, read_model_file
from .c_array import SOURCE as C_SOURCE
from .errors import IntegrityError, ModelLoadError, UsageError
from .fileio import sha256_bytes
from .foreign import ModelHints, foreign_info
from .preprocess import ImageInput, prepare_batch
from .spec import MANIFEST_NAME, ArtifactRecord, Bundle, InputSpec, ModelInfo

UNKNOWN_LABEL = "unknown"
BATCH_PIXELS = 32 * 96 * 96  # pixels per inference call: 32 images at 96 px, 5 at 224


def inference_batch(height: int, width: int, most: int = 32) -> int:
    """Images per inference call: each runtime keeps an arena sized for the largest batch it ran, and at 224 px
    four of them at batch 32 (export's parity) held 1.5 GB beside each other; BATCH_PIXELS keeps that to what 32
    images at 96 px take. Per image the figures do not depend on it."""
    return max(1, min(most, BATCH_PIXELS // max(1, height * width)))


def class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """(N, classes) probabilities; a binary model's single sigmoid column p becomes [1 - p, p]."""
    outputs = np.asarray(outputs)
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        return np.concatenate([1.0 - outputs, outputs], axis=1)
    return outputs


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    score: float
    best_guess: "Prediction | None" = None  # an `unknown` answer: the class that scored highest, below the threshold

    def to_dict(self) -> dict:
        data = {"label": self.label, "index": self.index, "score": round(self.score, 6)}
        if self.best_guess is not None:
            data["best_guess"] = self.best_guess.to_dict()
        return data

    def describe(self) -> str:
        """`cat (0.912)`, or for a rejection `unknown (best guess cat 0.565)`: the guess is never hidden."""
        if self.best_guess is not None:
            return f"{self.label} (best guess {self.best_guess.label} {self.best_guess.score:.3f})"
        return f"{self.label} ({self.score:.3f})"


def _pick_artifact(bundle: Bundle, directory: Path, name: str | None) -> ArtifactRecord:
    if name:
        return bundle.artifact(name)
    for record in bundle.artifacts:
        if not record.ok or record.backend not in BACKENDS:
            continue  # failed, or a TensorFlow-only format (keras, saved_model)
        if BACKENDS[record.backend].probe():
            return record
    recorded = {r.file for r in bundle.artifacts}
    unrecorded = sorted(p.name for suffix in {s for b in BACKENDS.values() for s in b.suffixes}
                        for p in Path(directory).glob(f"*{suffix}") if p.name not in recorded)
    if unrecorded:  # files an export wrote before it was killed: it records them only in its last step
        raise ModelLoadError(f"{directory}: the last export did not finish ({', '.join(unrecorded[:3])} "
                             f"{'is' if len(unrecorded) == 1 else 'are'} on disk but not recorded in {MANIFEST_NAME}); "
                             f"run `edgeship export` again")
    raise ModelLoadError(
        f"{directory}: bundle has no runtime artifact this machine can run; run `edgeship export` on it first"
    )


def _open(file: Path, backend: str, threads: int | None, provider: str | None, data: bytes | None = None):
    """A session of FILE; DATA: its bytes, already read and checked against the bundle record."""
    chosen = backend_for(file, backend)
    if provider is not None and chosen.providers == (None,):  # only a backend with providers takes one
        raise UsageError(f"--provider applies to ONNX models only, not {file.name}")
    return chosen.open(file, threads=threads, provider=provider, data=data)


def _check_embedded(session, info: ModelInfo, file: Path) -> None:
    """The labels and input spec inside the artifact must be the bundle's: edgeship.json edited by hand
    (labels reversed, another input size) would otherwise silently mislabel every image."""
    if session.embedded is None:
        return
    embedded = ModelInfo.from_dict(session.embedded, str(file))
    for what, mine, theirs in (("labels", list(embedded.labels), list(info.labels)),
                               ("input", embedded.input, info.input), ("task", embedded.task, info.task)):
        if mine != theirs:
            raise IntegrityError(f"{file}: its embedded {what} ({_short(mine)}) differ from {MANIFEST_NAME}'s "
                                 f"({_short(theirs)}); the bundle was edited or mixed with another run's files — "
                                 f"re-run `edgeship export`")


def _short(value) -> str:
    if isinstance(value, InputSpec):
        return f"{value.height}x{value.width}x{value.channels} {value.color} {list(value.value_range)}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Classifier:
    """An image classifier backed by one interpreter session per thread where the backend needs it.

    TFLite interpreters must not be invoked from two threads at once, so a Classifier used from several
    threads gives each thread its own interpreter (built from the same model bytes); ONNX Runtime
    sessions are thread-safe and shared.
    """

    def __init__(self, session, info: ModelInfo, path: Path, artifact: str | None = None,
                 precision: str | None = None, threads: int | None = None):
        self._primary = session
        self.name = artifact or path.name  # the Predictor contract's name
        self.threads = threads
        # Dynamic-range models pick activation scales per batch, so their outputs would depend on which
        # images share a batch: run them one image at a time to keep results batch-independent.
        self.precision = precision
        self.max_batch = 1 if str(precision or "").startswith("dynamic") else None
        self._owner = threading.get_ident()
        self._local = threading.local()
        self.info = info
        self.path = path
        self.artifact = artifact
        self._normalization = info.input.normalization()  # None for edgeship's models: they take 0-255

    @property
    def session(self):
        """This thread's session."""
        if self._primary.thread_safe or threading.get_ident() == self._owner:
            return self._primary
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._primary.clone()
        return session

    @property
    def runtime(self) -> str:
        """What runs the model here, e.g. 'ai-edge-litert 2.3.0' (the Predictor contract's name)."""
        return self.session.implementation

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    def timing_session(self, threads: int | None):
        """The same file in a session of its own at THREADS (sessions are built per thread count): timing."""
        return BACKENDS[self.session.backend].open(self.session.path, threads=threads, data=self.model_bytes)

    @property
    def model_bytes(self) -> bytes | None:
        """The bytes the session was built from (checked once at load): timing sessions reuse them."""
        session = self.session
        return getattr(getattr(session, "native", session), "model_bytes", None)

    def input_quantization(self) -> tuple[np.dtype, float, int] | None:
        session = self.session
        scale = (session.quantization or {}).get("input_scale")
        if not scale or session.input_dtype.kind not in "iu":
            return None
        return session.input_dtype, float(scale), int(session.quantization["input_zero_point"])

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", threads: int | None = None,
             artifact: str | None = None, provider: str | None = None,
             hints: ModelHints | None = None) -> "Classifier":
        """Load a bundle directory (choosing `artifact` or the first runnable one) or a lone file.

        `provider` picks an ONNX Runtime execution provider (cpu, cuda, tensorrt); default: the best available.
        `hints` (labels, input range) describe a file made elsewhere that lacks them in its own metadata.
        """
        path = Path(path)
        if path.is_dir() and not (path / MANIFEST_NAME).is_file() and (path / "bundle" / MANIFEST_NAME).is_file():
            path = path / "bundle"  # a run directory, accepted wherever a bundle is
        c_source = path.is_dir() and not (path / MANIFEST_NAME).is_file() and (path / C_SOURCE).is_file()
        if c_source:  # a model_int8_c folder on its own: the model its C array holds
            backend = "c_array" if backend == "auto" else backend
        elif path.is_dir():
            bundle = Bundle.load(path)
            record = _pick_artifact(bundle, path, artifact)
            file = path / record.file
            if file.is_dir():  # a folder artifact (the C source of a model): its tree checked, then read by its backend
                bundle.verify_artifact(path, record)
                data = None
            else:
                data = bundle.read_artifact(path, record)
            own = record.backend if backend == "auto" and record.backend in BACKENDS else backend
            session = _open(file, own, threads, provider, data=data)
            _check_embedded(session, bundle.info, file)
            return cls(session, bundle.info, file, record.name, record.precision, threads)
        if not path.exists():
            raise ModelLoadError(f"{path}: no such model file or bundle directory")
        data = None if c_source else read_model_file(path)
        session = _open(path, backend, threads, provider, data=data)
        if session.embedded is None:
            sibling = path.parent / MANIFEST_NAME
            if sibling.is_file():
                bundle = Bundle.load(path.parent)
                record = bundle.record_for_file(path.name)
                if record is not None and data is None:  # a folder: its tree checked
                    bundle.verify_artifact(path.parent, record)
                elif record is not None:  # the bytes loaded are the bytes checked
                    bundle.check_digest(path, record, sha256_bytes(data))
                return cls(session, bundle.info, path, record.name if record else None,
                           record.precision if record else None, threads)
            # a model made elsewhere: its standard metadata, else what the user says (hints)
            return cls(session, foreign_info(session, path, hints), path, None, None, threads)
        return cls(session, ModelInfo.from_dict(session.embedded, str(path)), path, session.embedded.get("format"),
                   session.embedded.get("precision"), threads)

    def predict_proba(self, batch: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities for an NHWC batch of prepared pixels, shape (N, len(labels)); BATCH_SIZE images per
        call (default: `inference_batch` of the input size)."""
        if batch.ndim != 4 or batch.shape[1:] != (self.info.input.height, self.info.input.width, 3):
            raise ValueError(
                f"expected a batch of shape (N, {self.info.input.height}, {self.info.input.width}, 3), "
                f"got {batch.shape}"
            )
        session = self.session
        if self._normalization is not None:  # a model made elsewhere, e.g. trained on -1..1
            mean, std = self._normalization
            batch = (batch.astype(np.float32) - mean) / std
        batch_size = batch_size or inference_batch(self.info.input.height, self.info.input.width)
        batch_size = min(batch_size, self.max_batch or batch_size)
        if len(batch) <= batch_size:
            outputs = session.run(batch)
        else:
            outputs = np.concatenate([session.run(batch[i : i + batch_size]) for i in range(0, len(batch), batch_size)])
        return class_probabilities(outputs) if self.info.task == "binary" else outputs

    def prepare(self, images: Sequence[ImageInput]) -> np.ndarray:
        return prepare_batch(images, self.info.input)

    def _top_k(self, probs: np.ndarray, k: int) -> list[Prediction]:
        order = np.argsort(-probs, kind="stable")[: max(1, k)]
        top = [Prediction(self.labels[i], int(i), float(probs[i])) for i in order]
        threshold = self.info.unknown_threshold
        if threshold is not None and top[0].score < threshold:
            top[0] = Prediction(UNKNOWN_LABEL, -1, top[0].score, best_guess=top[0])
        return top

    def predict(self, images, top_k: int = 1):
        """Top-k predictions. One image in gives a list of Prediction; a list (or 4-D array) gives a list
        of such lists, in the same order."""
        single = not (isinstance(images, (list, tuple)) or (isinstance(images, np.ndarray) and images.ndim == 4))
        items = [images] if single else list(images)
        probs = self.predict_proba(self.prepare(items))
        results = [self._top_k(row, top_k) for row in probs]
        return results[0] if single else results

    def describe(self) -> str:
        return f"{self.path.name} [{self.session.implementation}]"


def available_backends() -> dict[str, str | None]:
    return {name: backend.probe() for name, backend in BACKENDS.items()}
