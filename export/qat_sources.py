"""Where export's int8 formats get a fake-quantized model from: a run made by `edgeship qat` (its model_qat.keras,
checked against the bundle's record), or `--max-drop`'s last rung, which fine-tunes one on the training split on
demand. Either way the float model.keras stays the reference every artifact is measured against."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from edgeship.core.pixels import load_split
from edgeship.core.qat import EPOCHS, QAT_PROVENANCE, TRAIN_MAX
from edgeship.core.splits import SplitManifest
from edgeship.core.tensorflow import load_keras_model
from edgeship.runtime.errors import IntegrityError
from edgeship.runtime.fileio import sha256_file
from edgeship.runtime.spec import MANIFEST_NAME, Bundle

logger = logging.getLogger("edgeship")


def qat_record(bundle: Bundle) -> dict | None:
    """What `edgeship qat` recorded in this bundle, or None for a run trained without fake quantization."""
    record = bundle.provenance.get(QAT_PROVENANCE)
    return record if isinstance(record, dict) else None


def qat_model_path(bundle_dir: Path, bundle: Bundle) -> Path | None:
    record = qat_record(bundle)
    return None if record is None else bundle_dir / Path(str(record.get("model", ""))).name


def load_qat_model(bundle_dir: Path, bundle: Bundle, trust_code: bool = False):
    """The run's fake-quantized model, after checking it is the file `edgeship qat` wrote; None for other runs."""
    path = qat_model_path(bundle_dir, bundle)
    if path is None:
        return None
    if not path.is_file():
        raise IntegrityError(f"{path}: missing from the bundle; re-run `edgeship qat`")
    if sha256_file(path) != qat_record(bundle).get("model_sha256"):
        raise IntegrityError(f"{path}: changed since `edgeship qat` wrote it (sha256 differs from {MANIFEST_NAME}'s "
                             f"record); re-run `edgeship qat`")
    return load_keras_model(path, trust_code, bundle)


def ladder_trainer(manifest: SplitManifest, bundle: Bundle, model, job) -> Callable[[], object]:
    """The last rung's fine-tune, run at most once per export (the job caches it): the float MODEL rewritten with
    fake quantization, seeded on the job's calibration images, trained on the training split, its epoch chosen
    on the job's validation images. Never the test split."""

    def train():
        from edgeship.core.qat import quantization_aware

        train_split = load_split(manifest, bundle.info.labels, bundle.info.input, "train", TRAIN_MAX)
        if train_split is None or job.val is None or job.calibration is None:
            logger.warning("quantization-aware training skipped: the run has no training split to fine-tune on")
            return None
        logger.info(f"int8 trial quantization-aware training: {EPOCHS} epoch(s) on {len(train_split[1])} "
                    f"training images")
        outcome = quantization_aware(model, train_split, (job.val.images, job.val.labels), job.calibration,
                                     epochs=EPOCHS)
        # what the int8 file is held to agree with: the model it is converted from
        outcome.val_top = outcome.model.predict(job.val.images, verbose=0).argmax(axis=1)
        return outcome

    return train
