"""The phases of one training run. Each takes what it reads as a frozen value and returns its result as one;
nothing is handed on through a shared mutable bag.

    prepare_data(layout, config, info, fresh splits) -> PreparedData  (resume or start; splits; augmenter)
    build(config, info, size, data)                   -> BuiltModel    (Keras, strategy, model, class weights)
    train_phase1(PhaseContext)                        -> PhaseResult   (the head on cached features, or the whole model)
    train_phase2(PhaseContext)                        -> PhaseResult   (fine-tune the backbone's top layers)
    evaluate(PhaseContext)                            -> Evaluation    (unknown threshold from val; test figures)

The model inside `BuiltModel` is the one mutable thing: Keras trains it in place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
from edgeship.core.layout import RunLayout
from edgeship.core.metrics import majority_accuracy
from edgeship.core.pixels import CHUNK_IMAGES, iter_pixel_chunks
from edgeship.core.splits import SplitManifest
from edgeship.core.tfenv import captured_output, import_keras
from edgeship.runtime.classifier import class_probabilities
from edgeship.runtime.environment import peak_rss_mb
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import sha256_file
from edgeship.runtime.spec import ModelInfo

from . import precise_bn
from .augment import Augmenter, preview_augmentation
from .backbones import BACKBONE_LAYER, output_units
from .evaluation import evaluate_test, rejection_rate, unknown_threshold
from .features import cache_key, cached_features, feature_model, feature_sequence
from .fitting import RANK, FitPlan, class_weights, compile_model, fit
from .loader import make_sequence
from .memory import check_fits
from .model_setup import build_model, unfreeze_top
from .options import TrainConfig
from .resume import HISTORY, RunState, best_logged, logged_epochs, prepare_run, progress_so_far, save_state
from .strategy import make_strategy, multi_worker_fit, scope
from .training_warnings import chance_warning, collapse_warning, constant_features_warning

SPLITS_FILE = "splits.csv"
PHASE1_WEIGHTS = "phase1.weights.h5"
logger = logging.getLogger("edgeship")


@dataclass(frozen=True)
class Split:
    paths: list[Path]
    y: np.ndarray  # class indices; (N, 1) float for binary


@dataclass(frozen=True)
class PreparedData:
    """The run's data, fixed before any model exists: the split manifest on disk and its hash, the splits as
    (paths, y), the augmenter, and the interrupted run's state when this run resumes one."""

    state: RunState | None
    manifest: SplitManifest
    split_sha: str
    splits: Mapping[str, Split]
    augmenter: Augmenter | None

    @property
    def phases_done(self) -> tuple[str, ...]:
        return self.state.phases_done if self.state else ()


@dataclass(frozen=True)
class BuiltModel:
    keras: object
    strategy: object
    model: object
    class_weight: Mapping[int, float] | None


@dataclass(frozen=True)
class PhaseContext:
    """What every training phase reads, and none changes."""

    layout: RunLayout
    config: TrainConfig
    info: ModelInfo
    data: PreparedData
    built: BuiltModel

    @property
    def binary(self) -> bool:
        return self.info.task == "binary"


@dataclass(frozen=True)
class PhaseResult:
    epochs: int = 0
    stopped_early: str | None = None
    fine_tuned_layers: int = 0
    precise_batchnorm: bool = False  # BatchNorm statistics recomputed before each validation (precise_bn)
    warnings: tuple[str, ...] = ()
    profile: Mapping[str, dict] = field(default_factory=dict)  # the phase's own steps (the feature cache)
    ran: bool = True  # False: the run does not have this phase (phase 2 without --fine-tune-epochs)


@dataclass(frozen=True)
class Evaluation:
    figures: dict  # evaluate_test's figures on the test split (+ "unknown")
    info: ModelInfo  # with the unknown threshold calibrated on val
    warnings: tuple[str, ...] = ()


def profile_point(since: float) -> dict:
    """Seconds since SINCE, and the process's peak RSS so far (MiB): the scale benchmark reads these."""
    return {"seconds": round(time.time() - since, 2), "peak_rss_mib": round(peak_rss_mb() or 0.0, 1)}


def prepare_data(layout: RunLayout, config: TrainConfig, info: ModelInfo, fresh_splits: SplitManifest) -> PreparedData:
    """Resume or start: the split manifest on disk (reused when resuming), the splits as (paths, y)."""
    state = prepare_run(layout, config)
    layout.bundle.mkdir(parents=True, exist_ok=True)
    layout.training.mkdir(parents=True, exist_ok=True)
    if state and (layout.bundle / SPLITS_FILE).is_file():
        manifest = SplitManifest.read(layout.bundle / SPLITS_FILE)
        logger.warning(f"resuming the interrupted run in {layout.root} (done: {progress_so_far(layout, config, state)})")
    else:
        manifest = fresh_splits
        manifest.write(layout.bundle / SPLITS_FILE)
    splits = {}
    for name in ("train", "val", "test"):
        paths, y = manifest.paths_and_indices(name, info.labels)
        splits[name] = Split(paths, y.astype(np.float32).reshape(-1, 1) if info.task == "binary" else y)
    augmenter = None
    if config.hparams.augment.enabled:
        augmenter = Augmenter(config.hparams.augment, config.seed)
        preview_augmentation(splits["train"].paths[:4], info.input, config.hparams.augment,
                             layout.training / "augmentation.png", seed=config.seed)
    return PreparedData(state, manifest, sha256_file(layout.bundle / SPLITS_FILE), splits, augmenter)


def build(config: TrainConfig, info: ModelInfo, size: int, data: PreparedData) -> BuiltModel:
    """Build (or load --init) and refuse what cannot fit in memory."""
    _, keras = import_keras()
    strategy = make_strategy(config.hparams.strategy)  # first: a multi-worker strategy must precede other TF work
    keras.utils.set_random_seed(config.seed)
    with scope(strategy), captured_output():
        model = build_model(keras, config, info, size)
    multi_worker_fit(model, strategy)
    splits = data.splits
    check_fits(model, config.hparams.batch_size,
               trains_backbone=not config.model.backbone_frozen() or bool(config.hparams.fine_tune_epochs),
               eval_images=min(CHUNK_IMAGES, max(len(splits["val"].paths), len(splits["test"].paths))))
    weights = class_weights(splits["train"].y, len(info.labels)) if config.hparams.class_weights else None
    return BuiltModel(keras, strategy, model, weights)


def train_phase1(ctx: PhaseContext) -> PhaseResult:
    """The head on cached features (frozen backbone), or the whole model (from scratch)."""
    config, built = ctx.config, ctx.built
    frozen = config.model.backbone_frozen()
    if frozen and config.hparams.cache_features:
        result = _train_head_on_features(ctx)
    else:
        built.model.get_layer(BACKBONE_LAYER).trainable = not frozen
        with scope(built.strategy):
            compile_model(built.keras, built.model, config.hparams.learning_rate, ctx.binary)
        train_seq, val_seq = _sequences(ctx)
        extra = ()
        if precise_bn.wanted(built.model, len(train_seq), built.strategy):
            extra = (precise_bn.callback(built.model, lambda: train_seq.plain_batches(precise_bn.MAX_BATCHES),
                                         len(train_seq)),)
        outcome = fit(built.keras, built.model, train_seq, val_seq, ctx.layout.training,
                      FitPlan.for_phase("phase1", config, built.class_weight, extra_callbacks=extra))
        result = PhaseResult(outcome.epochs, outcome.stopped_early, precise_batchnorm=bool(extra))
    built.model.save_weights(ctx.layout.training / PHASE1_WEIGHTS)
    return result


def train_phase2(ctx: PhaseContext) -> PhaseResult:
    """Fine-tune the top backbone layers (frozen-backbone runs with --fine-tune-epochs)."""
    config, built, training = ctx.config, ctx.built, ctx.layout.training
    if not _has_phase2(config):
        return PhaseResult(ran=False)
    with scope(built.strategy):
        fine_tuned = unfreeze_top(built.keras, built.model, config.hparams.fine_tune_layers)
        compile_model(built.keras, built.model, config.hparams.fine_tune_learning_rate, ctx.binary)
    train_seq, val_seq = _sequences(ctx)
    floor = best_logged(training / HISTORY["phase1"], RANK)
    outcome = fit(built.keras, built.model, train_seq, val_seq, training,
                  FitPlan.for_phase("phase2", config, built.class_weight, floor=floor))
    if not (training / "best_phase2.weights.h5").is_file():  # fine-tuning never beat phase 1
        built.model.load_weights(training / PHASE1_WEIGHTS)
    return PhaseResult(outcome.epochs, outcome.stopped_early, fine_tuned_layers=fine_tuned)


def resumed_phase(ctx: PhaseContext, phase: str) -> PhaseResult:
    """A phase an interrupted run finished: its weights back in the model, its epochs from its log."""
    built, training = ctx.built, ctx.layout.training
    epochs = logged_epochs(training / HISTORY[phase])
    if phase == "phase1":
        built.model.load_weights(training / PHASE1_WEIGHTS)
        return PhaseResult(epochs)
    with scope(built.strategy):
        fine_tuned = unfreeze_top(built.keras, built.model, ctx.config.hparams.fine_tune_layers)
    best = training / "best_phase2.weights.h5"
    built.model.load_weights(best if best.is_file() else training / PHASE1_WEIGHTS)
    return PhaseResult(epochs, fine_tuned_layers=fine_tuned)


PHASES = (("phase1", train_phase1), ("phase2", train_phase2))


def evaluate(ctx: PhaseContext) -> Evaluation:
    """The unknown threshold from validation, then the test split's figures (and the OOD rejection rate)."""
    config, model, splits = ctx.config, ctx.built.model, ctx.data.splits
    warnings = [chance_warning(ctx.layout.training / HISTORY["phase1"], len(ctx.info.labels),
                               majority_accuracy(splits["val"].y))]
    val_probs = _predict(model, splits["val"].paths, ctx.info, config, "evaluate val")
    warnings.append(collapse_warning(val_probs, splits["val"].y.reshape(-1).astype(int), ctx.info.labels))
    warnings = tuple(w for w in warnings if w)
    for warning in warnings:
        logger.warning(warning)
    threshold = unknown_threshold(val_probs, config.data.unknown_recall) if config.data.unknown_recall else None
    info = ModelInfo(ctx.info.labels, ctx.info.input, ctx.info.task, threshold)
    test = splits["test"]
    test_probs = _predict(model, test.paths, info, config, "evaluate test")
    figures = evaluate_test(test_probs, test.y.reshape(-1).astype(int), info.labels, test.paths, info.input,
                            ctx.layout.training)
    if threshold is not None:
        figures["unknown"] = {"threshold": threshold, "target_val_recall": config.data.unknown_recall,
                              "test_rejection_rate": rejection_rate(test_probs, threshold)}
        if config.data.ood_dir:
            ood = _ood_paths(config.data.ood_dir)
            figures["unknown"].update(ood_dir=str(config.data.ood_dir), ood_images=len(ood),
                                      ood_rejection_rate=rejection_rate(_predict(model, ood, info, config), threshold))
    return Evaluation(figures, info, warnings)


def _has_phase2(config: TrainConfig) -> bool:
    return config.model.backbone_frozen() and bool(config.hparams.fine_tune_epochs)


def _train_head_on_features(ctx: PhaseContext) -> PhaseResult:
    """Phase 1 on cached features: a small head model trains on memory-mapped backbone outputs, then its
    weights move into the full classifier (same layer names)."""
    config, built, splits, info = ctx.config, ctx.built, ctx.data.splits, ctx.info
    keras, model = built.keras, built.model
    extractor = feature_model(model)
    fingerprint = {"backbone": config.model.backbone, "size": info.input.height, "resize": info.input.resize,
                   "weights": str(config.model.weights), "alpha": config.model.alpha, "init": config.model.init,
                   "backbone_weights": float(sum(np.asarray(w, dtype=np.float64).sum()
                                                 for w in model.get_layer(BACKBONE_LAYER).get_weights()))}
    cache = ctx.layout.training / "cache"
    start = time.time()
    features = {name: cached_features(extractor, splits[name].paths, info.input, cache, name,
                                      cache_key(fingerprint, splits[name].paths), config.hparams.batch_size,
                                      config.show_progress) for name in ("train", "val")}
    profile = {"feature_cache": profile_point(start)}
    warning = constant_features_warning(features["train"], config.model.backbone, config.model.weights)
    if warning:
        logger.warning(warning)
    units, activation = output_units(len(info.labels))
    with scope(built.strategy):
        inputs = keras.Input((features["train"].shape[1],), name="features")
        head = keras.Model(inputs, config.model.head.build(keras, inputs, units, activation), name="head")
        compile_model(keras, head, config.hparams.learning_rate, units == 1)
    multi_worker_fit(head, built.strategy)
    batch = config.hparams.batch_size
    outcome = fit(keras, head, feature_sequence(features["train"], splits["train"].y, batch, True, config.seed),
                  feature_sequence(features["val"], splits["val"].y, batch, False), ctx.layout.training,
                  FitPlan.for_phase("phase1", config, built.class_weight))
    for layer in head.layers[1:]:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    return PhaseResult(outcome.epochs, outcome.stopped_early, warnings=(warning,) if warning else (), profile=profile)


def _sequences(ctx: PhaseContext):
    config, splits = ctx.config, ctx.data.splits

    def make(name, shuffle, augment=None):
        return make_sequence(splits[name].paths, splits[name].y, ctx.info.input, config.hparams.batch_size, shuffle,
                             config.seed, desc=f"load {name} images", show_progress=config.show_progress,
                             augment=augment)

    return make("train", True, ctx.data.augmenter), make("val", False)


def _predict(model, paths, info: ModelInfo, config: TrainConfig, desc: str = "evaluate") -> np.ndarray:
    """Class probabilities for PATHS, streamed in chunks (memory does not grow with the split)."""
    parts = [class_probabilities(model.predict(chunk.astype(np.float32), batch_size=64, verbose=0))
             for _, chunk in iter_pixel_chunks(paths, info.input, desc=desc, show_progress=config.show_progress)
             if len(chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, len(info.labels)), dtype=np.float32)


def _ood_paths(ood_dir: str) -> list[Path]:
    from edgeship.runtime.preprocess import IMAGE_SUFFIXES

    root = Path(ood_dir)
    if not root.is_dir():
        raise UsageError(f"--ood-dir {ood_dir}: no such folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


__all__ = ["PHASES", "BuiltModel", "Evaluation", "PhaseContext", "PhaseResult", "PreparedData", "Split", "build",
           "evaluate", "prepare_data", "profile_point", "resumed_phase", "save_state", "train_phase1", "train_phase2"]
