"""`train()`: scan -> split -> build -> phase 1 (head on cached features, or the whole model) ->
phase 2 (fine-tune the top of the backbone) -> evaluate -> bundle. An interrupted run resumes.

Phases follow what people do by hand: with a pretrained backbone, first train only the head on a frozen
backbone (here on features computed once and cached, see features.py), then unfreeze the top N backbone
layers at a low learning rate with BatchNorm kept in inference mode. A from-scratch model trains whole.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeship.core.dataset import ScannedDataset, scan_folder
from edgeship.core.layout import RunLayout, run_lock
from edgeship.core.splits import SplitManifest, make_splits
from edgeship.runtime.errors import EdgeshipError
from edgeship.runtime.spec import Bundle, InputSpec, ModelInfo

from .backbones import get_backbone
from .bundle_writer import MODEL_FILE, TrainedRun, write_bundle
from .listfiles import is_list_dataset, scan_list_dataset
from .options import LR_SCHEDULES, DataOptions, HParams, ModelOptions, TrainConfig
from .phases import (
    PHASES,
    SPLITS_FILE,
    PhaseContext,
    PhaseResult,
    build,
    evaluate,
    prepare_data,
    profile_point,
    resumed_phase,
)
from .resume import STATE_FILE, check_resumable, save_state
from .strategy import WorkerRole, worker_role

logger = logging.getLogger("edgeship")
__all__ = ["MODEL_FILE", "SPLITS_FILE", "LR_SCHEDULES", "DataOptions", "HParams", "ModelOptions", "TrainConfig",
           "TrainResult", "scan_dataset", "train"]


@dataclass
class TrainResult:
    layout: RunLayout
    bundle: Bundle
    test_accuracy: float
    epochs_run: int
    weights_sha256: str = ""  # the trained weights' digest: equal on every worker of a multi-worker run
    role: WorkerRole = field(default_factory=lambda: WorkerRole("chief", 0, 1))
    stopped_early: list[str] = field(default_factory=list)  # "phase1 stopped at epoch 7/20: ..." per phase that did


def scan_dataset(data_dir: str | Path, classes=None, show_progress: bool = True) -> tuple[ScannedDataset, set[Path] | None]:
    """(the dataset, the official test images or None): class folders, or Food-101-style list files."""
    data_dir = Path(data_dir)
    if is_list_dataset(data_dir):
        return scan_list_dataset(data_dir, classes, show_progress=show_progress)
    return scan_folder(data_dir, classes, show_progress=show_progress), None


def _train_run(data_dir: Path, out_dir: Path, config: TrainConfig, role: WorkerRole) -> TrainResult:
    started = time.time()
    layout = RunLayout(out_dir)
    layout.check_claimable()  # before scanning: a folder of the user's own files is refused at once
    check_resumable(layout, config)  # and so is finished work without --overwrite
    size = get_backbone(config.model.backbone).input_size(config.model.image_size)  # hub: fails before any network
    dataset, fixed_test = scan_dataset(data_dir, config.data.classes, config.show_progress)
    info = ModelInfo(labels=dataset.classes, input=InputSpec(height=size, width=size, resize=config.model.resize),
                     task="binary" if len(dataset.classes) == 2 else "multiclass")
    splits = make_splits(dataset, config.data.splits, fixed_test)  # a dataset that cannot be split fails here, before any write
    fresh = not layout.root.exists()
    with run_lock(layout.root, "train"):
        layout.claim()
        try:
            return replace(_train_in(layout, config, dataset, fixed_test, splits, info, size, started), role=role)
        except EdgeshipError:
            if fresh and not (layout.training / STATE_FILE).is_file() and not layout.foreign_entries():
                shutil.rmtree(layout.root, ignore_errors=True)  # refused before training began: leave nothing
            raise


def _train_in(layout: RunLayout, config: TrainConfig, dataset: ScannedDataset, fixed_test, fresh_splits: SplitManifest,
              info: ModelInfo, size: int, started: float) -> TrainResult:
    """The phases in order; each result is kept here, and the run's state is saved after every phase."""
    profile = {"scan_split": profile_point(started)}  # scanning and splitting happened before the lock

    def timed(name, phase, *args):
        start = time.time()
        result = phase(*args)
        profile[name] = profile_point(start)
        return result

    data = timed("prepare_splits", prepare_data, layout, config, info, fresh_splits)
    built = timed("build_model", build, config, info, size, data)
    done = list(data.phases_done)
    save_state(layout, config, "running", done)  # from here on a rerun resumes
    ctx = PhaseContext(layout, config, info, data, built)
    results: dict[str, PhaseResult] = {}
    for name, phase in PHASES:
        if name in done:
            results[name] = resumed_phase(ctx, name)
            continue
        result = timed(f"train_{name}", phase, ctx)
        profile.update(result.profile)
        if result.ran:
            results[name] = result
            done.append(name)
            save_state(layout, config, "running", done)
    evaluation = timed("evaluate", evaluate, ctx)
    bundle = write_bundle(TrainedRun(
        layout, config, dataset, fixed_test, data, built, evaluation,
        epochs={name: r.epochs for name, r in results.items()},
        fine_tuned_layers=sum(r.fine_tuned_layers for r in results.values()),
        precise_batchnorm=any(r.precise_batchnorm for r in results.values()),
        stopped_early=tuple(r.stopped_early for r in results.values() if r.stopped_early),
        warnings=tuple(w for r in results.values() for w in r.warnings) + evaluation.warnings,
        profile=profile, started=started))
    training = bundle.provenance["training"]
    return TrainResult(layout, bundle, float(evaluation.figures["accuracy"]), training["epochs_run"],
                       training["weights_sha256"], stopped_early=list(training["stopped_early"]))


def train(data_dir: str | Path, out_dir: str | Path, config: TrainConfig | None = None) -> TrainResult:
    """Train a classifier on class folders (or Food-101-style list files) and write the run directory.

    Under `strategy="multi-worker"` every worker named in TF_CONFIG runs this same call; the chief writes
    OUT_DIR (usually on shared storage) and the other workers train in a private scratch folder they remove."""
    config = TrainConfig() if config is None else config  # a fresh default per call, never one shared instance
    config.validate()
    role = worker_role(config.hparams.strategy)
    if role.chief:
        return _train_run(Path(data_dir), Path(out_dir), config, role)
    scratch = Path(tempfile.mkdtemp(prefix=f"edgeship-{role.task_type}{role.index}-"))
    try:
        return _train_run(Path(data_dir), scratch / "run", config, role)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
