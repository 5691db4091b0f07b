"""Compare any two models on a folder of class sub-folders: `edgeship gate --reference A --candidate B --data DIR`.

Either side may be a `.tflite`, an `.onnx`, a run or bundle directory, a `.keras` file or a SavedModel
directory (TensorFlow needed for those two; their labels and input spec come from the `edgeship.json`
beside them or from the other model). Both sides are Predictors: pixels decoded once, probabilities out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from edgeship.core.errors import DatasetError
from edgeship.core.metrics import collapse_figures
from edgeship.core.pixels import iter_pixel_chunks
from edgeship.core.records import ParityReport, ParityRow, Reference
from edgeship.core.tensorflow import bundle_dir_of, is_saved_model, open_predictor
from edgeship.runtime.errors import ModelLoadError, UsageError
from edgeship.runtime.spec import Bundle

from .parity import accuracy, compare_predictions, describe_flipped, majority_accuracy


def _model_path(path: str | Path, role: str) -> Path:
    """What a side names. A run or bundle directory as the *reference* means its Keras model (the
    reference by definition); as the candidate, its first artifact this machine runs."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model file or bundle directory")
    bundle_dir = bundle_dir_of(path)
    if role == "reference" and bundle_dir is not None and not is_saved_model(path):
        return bundle_dir / (Bundle.load(bundle_dir).keras_model or "model.keras")
    return path


def _image_size(predictor) -> tuple[int, int]:
    return predictor.info.input.height, predictor.info.input.width


def compare_models(reference: str | Path, candidate: str | Path, data_dir: str | Path,
                   show_progress: bool = True, hints=None, trust_code: bool = False) -> ParityReport:
    """A parity report (export's record type) of CANDIDATE against REFERENCE on every image in DATA_DIR.
    HINTS (runtime.foreign.ModelHints) describe a side made elsewhere that lacks labels or normalization."""
    from edgeship.core.dataset import scan_folder

    named = [("reference", _model_path(reference, "reference")), ("candidate", _model_path(candidate, "candidate"))]
    sides = {}
    for role, path in sorted(named, key=lambda s: s[1].suffix == ".keras" or is_saved_model(s[1])):
        # runtime models first, so a lone .keras side can borrow their labels
        sides[role] = open_predictor(path, info=next((s.info for s in sides.values()), None), hints=hints,
                                     trust_code=trust_code)
    ref, cand = sides["reference"], sides["candidate"]
    if ref.info.labels != cand.info.labels:
        raise UsageError(f"the two models have different labels: {list(ref.info.labels)} vs {list(cand.info.labels)}")
    dataset = scan_folder(data_dir, show_progress=show_progress)
    unknown = sorted(set(dataset.classes) - set(ref.info.labels))
    if unknown:
        raise DatasetError(f"{data_dir}: class folder(s) {', '.join(unknown)} are not labels of the models")
    paths = [s.path for s in dataset.samples]
    labels = np.array([ref.info.labels.index(s.label) for s in dataset.samples])
    if _image_size(ref) != _image_size(cand):  # their normalizations may differ: each applies its own
        raise UsageError(f"the two models take different inputs ({ref.info.input.height}x{ref.info.input.width} vs "
                         f"{cand.info.input.height}x{cand.info.input.width}); compare models of one input size")
    ref_parts, cand_parts = [], []
    for _, chunk in iter_pixel_chunks(paths, ref.info.input, desc="compare", show_progress=show_progress):
        ref_parts.append(ref.predict_proba(chunk))  # each chunk decoded once for both sides, then dropped
        cand_parts.append(cand.predict_proba(chunk))
    ref_probs, cand_probs = np.concatenate(ref_parts), np.concatenate(cand_parts)
    figures = compare_predictions(ref_probs, cand_probs, labels, ref.info.labels)
    figures["flipped"] = describe_flipped(figures["flipped"], paths, labels, cand_probs, ref.info.labels)
    row = ParityRow.from_json({"name": Path(candidate).name, "format": Path(candidate).suffix.lstrip(".") or "bundle",
                               "status": "ok", "path": str(candidate), "runtime": cand.runtime, **figures})
    return ParityReport(labels=list(ref.info.labels), artifacts=[row], dataset=dataset.summary(),
                        reference=Reference(path=str(reference), runtime=ref.runtime, accuracy=accuracy(ref_probs, labels),
                                            n_test=len(paths), n_skipped=len(dataset.skipped),
                                            majority_accuracy=majority_accuracy(labels),
                                            **collapse_figures(ref_probs, labels, ref.info.labels)))
