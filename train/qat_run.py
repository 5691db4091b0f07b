"""`edgeship qat RUN --out NEW`: a new run whose int8 exports come from quantization-aware training. The run's
model.keras stays the float model the user trained (every artifact is still measured against it); next to it,
model_qat.keras holds the fake-quantized fine-tune, which `export` converts its int8 formats from, using the
ranges it learned. Choices read the training, calibration and validation splits, never the test split."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeship.core.derived_run import check_new_run, write_derived_run
from edgeship.core.integrity import trained_files
from edgeship.core.layout import RunLayout, run_lock
from edgeship.core.pixels import load_split
from edgeship.core.qat import EPOCHS, LEARNING_RATE, QAT_MODEL, QAT_PROVENANCE, TRAIN_MAX
from edgeship.core.splits import SplitManifest
from edgeship.core.tensorflow import load_keras_model
from edgeship.core.errors import DatasetError
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import sha256_file
from edgeship.runtime.spec import Bundle

CALIBRATION_MAX = 300  # export's default --calib-size: the ranges are seeded from the same images


def qat_run(run: str | Path, out: str | Path, epochs: int = EPOCHS, learning_rate: float = LEARNING_RATE,
            trust_code: bool = False, show_progress: bool = True) -> dict:
    """Fine-tune RUN's model with fake quantization into the new run OUT (bundle, split manifest and training
    records copied; no artifacts). Returns the provenance record written into OUT's bundle."""
    from edgeship.core.qat import quantization_aware

    if epochs < 0:
        raise UsageError(f"--epochs must be 0 or more, got {epochs}")
    layout, out = RunLayout.find(run), check_new_run(out)
    bundle = Bundle.load(layout.bundle)
    if bundle.info.task != "multiclass":
        raise UsageError(f"{layout.bundle}: quantization-aware training handles multiclass (softmax) models; this "
                         f"one is {bundle.info.task}")
    model_path, manifest_path = trained_files(layout, bundle)
    model = load_keras_model(model_path, trust_code, bundle)
    manifest = SplitManifest.read(manifest_path)
    info = bundle.info
    train = load_split(manifest, info.labels, info.input, "train", TRAIN_MAX, show_progress)
    val = (load_split(manifest, info.labels, info.input, "val", None, show_progress)
           or load_split(manifest, info.labels, info.input, "calib", None, show_progress))
    calibration = load_split(manifest, info.labels, info.input, "calib", CALIBRATION_MAX, show_progress)
    if train is None or val is None or calibration is None:
        raise DatasetError(f"{manifest_path}: quantization-aware training needs training, calibration and "
                           f"validation images; re-run `edgeship train` with the default splits")
    low, high = bundle.info.input.value_range if bundle.info.input.value_range else (0.0, 255.0)
    outcome = quantization_aware(model, train, val, calibration[0], epochs, learning_rate, (float(low), float(high)),
                                 show_progress=show_progress)
    with run_lock(layout.root, "qat"):
        return _write(layout, bundle, out, outcome, model_path)


def _write(layout: RunLayout, bundle: Bundle, out: Path, outcome, model_path: Path) -> dict:
    """OUT with the float model and split manifest as they were, the fake-quantized model beside them, and the
    provenance saying which run it was fine-tuned from (written whole or not at all)."""
    record: dict = {}

    def fill(new_bundle: Path) -> None:
        shutil.copy2(model_path, new_bundle / model_path.name)
        outcome.model.save(new_bundle / QAT_MODEL)
        record.update({"from_run": str(layout.root), "from_model_sha256": sha256_file(model_path),
                       "model": QAT_MODEL, "model_sha256": sha256_file(new_bundle / QAT_MODEL), **outcome.to_json()})
        bundle.provenance[QAT_PROVENANCE] = record

    write_derived_run(layout, bundle, out, fill)
    return record
