"""One Keras fit with resume, as a value: a `FitPlan` says what to fit and how, `fit()` returns a `FitOutcome`.

The callbacks are the same for every phase: the rank (accuracy, ties broken by loss), BackupAndRestore so a
killed run resumes mid-phase, the best checkpoint, the CSV log, early stopping and the LR schedule.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from .options import TrainConfig
from .resume import HISTORY, best_logged, logged_epochs

RANK = "val_rank"  # what the best checkpoint and early stopping follow: validation accuracy, ties by loss
RANK_LOSS_WEIGHT = 1e-6  # small enough that loss never outweighs one validation image (losses stay below ~10)
logger = logging.getLogger("edgeship")


@dataclass(frozen=True)
class FitPlan:
    """What one phase fits: its name (phase1 | phase2: the log and checkpoint files), epochs, the learning
    rate the cosine schedule starts from, early stopping's patience, the floor a checkpoint must beat (phase
    2 must beat phase 1), class weights, and callbacks that must run before Keras validates."""

    phase: str
    epochs: int
    learning_rate: float
    patience: int
    lr_schedule: str
    floor: float | None = None
    class_weight: Mapping[int, float] | None = None
    extra_callbacks: tuple = ()
    show_progress: bool = True
    watchers: tuple = ()  # (phase, epoch, logs) -> True to stop: a search's pruner reading each epoch's val figures

    @classmethod
    def for_phase(cls, phase: str, config: TrainConfig, class_weight=None, floor: float | None = None,
                  extra_callbacks: tuple = ()) -> FitPlan:
        hparams = config.hparams
        epochs, rate = ((hparams.epochs, hparams.learning_rate) if phase == "phase1"
                        else (hparams.fine_tune_epochs, hparams.fine_tune_learning_rate))
        return cls(phase, epochs, rate, hparams.patience, hparams.lr_schedule, floor, class_weight,
                   tuple(extra_callbacks), config.show_progress, tuple(config.epoch_watchers))


@dataclass(frozen=True)
class FitOutcome:
    epochs: int  # logged for the phase, including those of an interrupted earlier attempt
    stopped_early: str | None = None  # why early stopping ended it before its epochs; None when it ran them all


def fit(keras, model, train_data, val_data, training_dir: Path, plan: FitPlan) -> FitOutcome:
    """Fit with resume; load the phase's best weights afterwards."""
    best = training_dir / f"best_{plan.phase}.weights.h5"
    history_csv = training_dir / HISTORY[plan.phase]
    known = [v for v in (plan.floor, best_logged(history_csv, RANK)) if v is not None]
    callbacks = _callbacks(keras, training_dir, plan, max(known) if known else None)
    verbose = (1 if sys.stdout.isatty() else 2) if plan.show_progress else 0
    model.fit(train_data, validation_data=val_data, epochs=plan.epochs, verbose=verbose,
              class_weight=dict(plan.class_weight) if plan.class_weight else None, callbacks=callbacks)
    if best.is_file():
        model.load_weights(best)
    logged = logged_epochs(history_csv)
    stopper = next(c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping))
    if stopper.stopped_epoch > 0 and logged < plan.epochs:
        note = (f"{plan.phase} stopped at epoch {logged}/{plan.epochs}: no validation improvement for "
                f"{plan.patience} epochs (--patience {plan.patience}; the best epoch's weights are kept)")
        logger.info(note)
        return FitOutcome(logged, note)
    return FitOutcome(logged)


def compile_model(keras, model, learning_rate: float, binary: bool) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy", metrics=["accuracy"])


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """n / (k * count_c): each class contributes equally to the loss."""
    indices = y.reshape(-1).astype(int)
    counts = np.bincount(indices, minlength=n_classes)
    return {c: float(len(indices) / (n_classes * counts[c])) for c in range(n_classes) if counts[c]}


def _rank_callback(keras):
    """Adds `val_rank` = val_accuracy - 1e-6 * val_loss to each epoch's logs: accuracy first, loss breaking ties.
    A validation split of a few dozen images saturates early (32 photos: 100 % from the third epoch on): on
    accuracy alone the checkpoint keeps the first such epoch and early stopping ends a model whose loss is still
    falling."""

    class Rank(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None and "val_accuracy" in logs and "val_loss" in logs:
                logs[RANK] = float(logs["val_accuracy"]) - RANK_LOSS_WEIGHT * float(logs["val_loss"])

    return Rank()


def _callbacks(keras, training_dir: Path, plan: FitPlan, floor: float | None):
    """The rank (first: the others read it), backup for resume (so a logged epoch is always a backed-up one),
    best checkpoint (seeded with the best already logged, so a resumed run never overwrites a better
    checkpoint), CSV log, early stopping and the LR schedule."""
    callbacks = [
        _rank_callback(keras),
        keras.callbacks.BackupAndRestore(str(training_dir / "backup" / plan.phase), double_checkpoint=True),
        keras.callbacks.ModelCheckpoint(str(training_dir / f"best_{plan.phase}.weights.h5"), monitor=RANK,
                                        mode="max", save_best_only=True, save_weights_only=True,
                                        initial_value_threshold=floor),
        *plan.extra_callbacks,  # precise BatchNorm: recalibrates after an epoch's last step, before Keras validates
        keras.callbacks.CSVLogger(str(training_dir / HISTORY[plan.phase]), append=True),
        keras.callbacks.EarlyStopping(monitor=RANK, mode="max", patience=plan.patience),
    ]
    if plan.watchers:
        callbacks.append(_watch_callback(keras, plan))  # last: it sees the logged, backed-up epoch
    if plan.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                           patience=max(1, plan.patience // 2), verbose=0))
    elif plan.lr_schedule == "cosine":
        base, epochs = plan.learning_rate, plan.epochs
        callbacks.append(keras.callbacks.LearningRateScheduler(
            lambda epoch: float(base * 0.5 * (1 + np.cos(np.pi * epoch / max(1, epochs))))))
    return callbacks


def _watch_callback(keras, plan: FitPlan):
    """Hands each finished epoch (1-based, counted across a resume) and its logs to the plan's watchers; any
    that answers True ends the fit there, as early stopping would (the best checkpoint is still loaded)."""

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if any([watcher(plan.phase, epoch + 1, dict(logs or {})) for watcher in plan.watchers]):
                self.model.stop_training = True

    return Watch()
