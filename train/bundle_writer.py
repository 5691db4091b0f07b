"""The last step of a training run: model.keras, labels, curves, edgeship.json with provenance and the training
report, all from one frozen `TrainedRun`; then the run's state says `done`."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from edgeship.core.dataset import ScannedDataset
from edgeship.core.layout import RunLayout
from edgeship.runtime.environment import library_versions
from edgeship.runtime.fileio import atomic_write_text, sha256_file
from edgeship.runtime.spec import Bundle

from .backbones import HUB_PREFIX
from .model_setup import weights_sha256
from .options import TrainConfig
from .phases import SPLITS_FILE, BuiltModel, Evaluation, PreparedData
from .plots import plot_history
from .resume import HISTORY, best_logged, save_state
from .strategy import set_synchronized_batchnorm

MODEL_FILE = "model.keras"
CURVES = {"phase1": "curves.png", "phase2": "curves_fine_tune.png"}


@dataclass(frozen=True)
class TrainedRun:
    """Everything the bundle records about one finished training run."""

    layout: RunLayout
    config: TrainConfig
    dataset: ScannedDataset
    fixed_test: set[Path] | None
    data: PreparedData
    built: BuiltModel
    evaluation: Evaluation
    epochs: Mapping[str, int]  # per phase run (or resumed)
    fine_tuned_layers: int
    precise_batchnorm: bool
    stopped_early: tuple[str, ...]
    warnings: tuple[str, ...]
    profile: Mapping[str, dict]  # seconds and peak RSS so far, per phase
    started: float


def write_bundle(run: TrainedRun) -> Bundle:
    layout, config, model = run.layout, run.config, run.built.model
    model_path = layout.bundle / MODEL_FILE
    set_synchronized_batchnorm(model, False)
    tmp = model_path.with_name(f".{model_path.stem}.tmp.keras")  # Keras insists on the .keras suffix
    model.save(tmp)
    tmp.replace(model_path)
    for phase, picture in CURVES.items():
        if (layout.training / HISTORY[phase]).is_file():
            plot_history(layout.training / HISTORY[phase], layout.training / picture)
    info = run.evaluation.info
    atomic_write_text(layout.bundle / "labels.txt", "\n".join(info.labels) + "\n")
    bundle = Bundle(info=info, keras_model=MODEL_FILE, split_manifest=SPLITS_FILE, provenance={
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_sha256": sha256_file(model_path),
        "dataset": {**run.dataset.summary(), "layout": "list files" if run.fixed_test is not None else "class folders"},
        "split": {"file": SPLITS_FILE, "sha256": run.data.split_sha, "counts": run.data.manifest.counts(),
                  **asdict(config.data.splits)},
        "training": _training_record(run),
        "versions": library_versions(),
    })
    bundle.save(layout.bundle)
    from .training_report import write_training_report

    write_training_report(layout, bundle, run.evaluation.figures)
    save_state(layout, config, "done", run.epochs.keys())
    return bundle


def _training_record(run: TrainedRun) -> dict:
    model, hparams = run.config.model, run.config.hparams
    frozen = model.backbone_frozen()
    return {
        "backbone": model.backbone, "image_size": run.evaluation.info.input.height, "weights": model.weights or "none",
        "init": model.init, "frozen_backbone": frozen, "cached_features": frozen and hparams.cache_features,
        "epochs_requested": hparams.epochs, "fine_tune_epochs_requested": hparams.fine_tune_epochs,
        "epochs_run": sum(run.epochs.values()), "epochs_per_phase": dict(run.epochs),
        "fine_tuned_layers": run.fine_tuned_layers, "augment": hparams.augment.describe(),
        "class_weights": dict(run.built.class_weight) if run.built.class_weight else None,
        "strategy": hparams.strategy or "default", "head": asdict(model.head), "lr_schedule": hparams.lr_schedule,
        "best_val_accuracy": max(v for v in (best_logged(run.layout.training / h) for h in HISTORY.values())
                                 if v is not None),
        "test_accuracy": run.evaluation.figures["accuracy"], "seconds": round(time.time() - run.started, 1),
        "weights_sha256": weights_sha256(run.built.model),
        "profile": dict(run.profile),
        # A TF-Hub backbone is a TFSMLayer: Keras reloads it only with safe_mode=False (see hub.py)
        "keras_safe_mode": not model.backbone.startswith(HUB_PREFIX),
        "precise_batchnorm": run.precise_batchnorm,
        "stopped_early": list(run.stopped_early),
        "warnings": list(run.warnings),
    }
