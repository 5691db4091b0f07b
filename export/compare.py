"""Compare any two models on a folder of class sub-folders: `edgeship gate --reference A --candidate B --data DIR`.

Either side may be a `.tflite`, an `.onnx`, a bundle directory or a `.keras` file (TensorFlow needed for
that one; its labels and input spec come from the `edgeship.json` beside it or from the other model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeship.runtime.classifier import Classifier, class_probabilities
from edgeship.runtime.errors import DatasetError, ModelLoadError, UsageError
from edgeship.runtime.spec import MANIFEST_NAME, Bundle, ModelInfo

from .parity import accuracy, compare_predictions, describe_flipped, majority_accuracy


class _KerasSide:
    def __init__(self, path: Path, info: ModelInfo | None):
        from .exporter import load_keras_model

        sibling = path.parent / MANIFEST_NAME
        self.info = Bundle.load(path.parent).info if sibling.is_file() else info
        if self.info is None:
            raise UsageError(f"{path}: a .keras model needs an edgeship.json beside it, or a non-Keras model on "
                             f"the other side, to know its labels and input size")
        self.model = load_keras_model(path)

    def predict_proba(self, images) -> np.ndarray:
        from edgeship.runtime.preprocess import prepare_batch

        return class_probabilities(self.model.predict(prepare_batch(images, self.info.input).astype(np.float32),
                                                      verbose=0))


class _RuntimeSide:
    def __init__(self, path: Path):
        self.classifier = Classifier.load(path)
        self.info = self.classifier.info

    def predict_proba(self, images) -> np.ndarray:
        return self.classifier.predict_proba(self.classifier.prepare(images))


def _open(path: str | Path, other_info: ModelInfo | None = None):
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model file or bundle directory")
    return _KerasSide(path, other_info) if path.suffix == ".keras" else _RuntimeSide(path)


def compare_models(reference: str | Path, candidate: str | Path, data_dir: str | Path,
                   show_progress: bool = True) -> dict:
    """A parity report (same keys as export's) of CANDIDATE against REFERENCE on every image in DATA_DIR."""
    from edgeship.train.dataset import scan_folder

    ordered = sorted([("reference", Path(reference)), ("candidate", Path(candidate))], key=lambda s: s[1].suffix == ".keras")
    sides = {}
    for role, path in ordered:  # runtime models first, so a .keras side can borrow their labels
        sides[role] = _open(path, next((s.info for s in sides.values()), None))
    ref, cand = sides["reference"], sides["candidate"]
    if ref.info.labels != cand.info.labels:
        raise UsageError(f"the two models have different labels: {list(ref.info.labels)} vs {list(cand.info.labels)}")
    dataset = scan_folder(data_dir, show_progress=show_progress)
    unknown = sorted(set(dataset.classes) - set(ref.info.labels))
    if unknown:
        raise DatasetError(f"{data_dir}: class folder(s) {', '.join(unknown)} are not labels of the models")
    paths = [s.path for s in dataset.samples]
    labels = np.array([ref.info.labels.index(s.label) for s in dataset.samples])
    ref_probs, cand_probs = ref.predict_proba(paths), cand.predict_proba(paths)
    row = {"name": Path(candidate).name, "format": Path(candidate).suffix.lstrip(".") or "bundle", "status": "ok",
           "path": str(candidate), **compare_predictions(ref_probs, cand_probs, labels, ref.info.labels)}
    row["flipped"] = describe_flipped(row["flipped"], paths, labels, cand_probs, ref.info.labels)
    return {"reference": {"path": str(reference), "accuracy": accuracy(ref_probs, labels), "n_test": len(paths),
                          "majority_accuracy": majority_accuracy(labels)},
            "dataset": dataset.summary(), "labels": list(ref.info.labels), "artifacts": [row]}
