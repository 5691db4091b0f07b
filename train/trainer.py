"""`train()`: scan -> split -> build -> phase 1 (head on cached features, or the whole model) ->
phase 2 (fine-tune the top of the backbone) -> evaluate -> bundle. An interrupted run resumes.

Phases follow what people do by hand: with a pretrained backbone, first train only the head on a frozen
backbone (here on features computed once and cached, see features.py), then unfreeze the top N backbone
layers at a low learning rate with BatchNorm kept in inference mode. A from-scratch model trains whole.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from edgeship.core.dataset import ScannedDataset, scan_folder
from edgeship.core.errors import BackboneError
from edgeship.core.layout import RunLayout, run_lock
from edgeship.core.metrics import describe_collapse, majority_accuracy, never_predicted, predictions_collapsed
from edgeship.core.pixels import CHUNK_IMAGES, iter_pixel_chunks
from edgeship.core.splits import SplitManifest, make_splits
from edgeship.core.tfenv import captured_output, import_keras
from edgeship.runtime.classifier import class_probabilities
from edgeship.runtime.environment import library_versions, peak_rss_mb
from edgeship.runtime.errors import EdgeshipError, UsageError
from edgeship.runtime.fileio import atomic_write_json, atomic_write_text, read_json, sha256_file
from edgeship.runtime.spec import Bundle, InputSpec, ModelInfo

from . import precise_bn
from .augment import Augmenter, preview_augmentation
from .backbones import (
    BACKBONE_LAYER,
    HUB_PREFIX,
    build_classifier,
    get_backbone,
    leaf_layers,
    output_units,
)
from .evaluation import evaluate_test, rejection_rate, unknown_threshold
from .features import cache_key, cached_features, feature_model, feature_sequence
from .listfiles import is_list_dataset, scan_list_dataset
from .loader import make_sequence
from .memory import check_fits
from .options import LR_SCHEDULES, DataOptions, HParams, ModelOptions, TrainConfig  # noqa: F401 - re-exported
from .plots import plot_history
from .strategy import WorkerRole, make_strategy, multi_worker_fit, scope, set_synchronized_batchnorm, worker_role

MODEL_FILE = "model.keras"
SPLITS_FILE = "splits.csv"
STATE_FILE = "state.json"
HISTORY = {"phase1": "history.csv", "phase2": "history_fine_tune.csv"}
logger = logging.getLogger("edgeship")


@dataclass
class TrainResult:
    layout: RunLayout
    bundle: Bundle
    test_accuracy: float
    epochs_run: int
    weights_sha256: str = ""  # the trained weights' digest: equal on every worker of a multi-worker run
    role: WorkerRole = field(default_factory=lambda: WorkerRole("chief", 0, 1))
    stopped_early: list[str] = field(default_factory=list)  # "phase1 stopped at epoch 7/20: ..." per phase that did


@dataclass
class _Split:
    paths: list[Path]
    y: np.ndarray  # class indices; (N, 1) float for binary


def scan_dataset(data_dir: str | Path, classes=None, show_progress: bool = True) -> tuple[ScannedDataset, set[Path] | None]:
    """(the dataset, the official test images or None): class folders, or Food-101-style list files."""
    data_dir = Path(data_dir)
    if is_list_dataset(data_dir):
        return scan_list_dataset(data_dir, classes, show_progress=show_progress)
    return scan_folder(data_dir, classes, show_progress=show_progress), None


def _prepare_run(layout: RunLayout, config: TrainConfig) -> dict | None:
    """The interrupted run's state to resume, or None for a fresh start. Refuses to overwrite finished
    work unless asked to; even then removes only what edgeship wrote (the report first)."""
    state = _check_resumable(layout, config)
    if state and not config.overwrite:
        return state
    kept = layout.remove_owned()  # cached features (training/cache) are keyed: a new run reuses what matches
    if kept:
        logger.warning(f"{layout.root}: kept {len(kept)} file(s) edgeship did not write "
                       f"({', '.join(p.relative_to(layout.root).as_posix() for p in kept[:3])}"
                       f"{' …' if len(kept) > 3 else ''})")
    return None


def _check_resumable(layout: RunLayout, config: TrainConfig) -> dict | None:
    """The state of an interrupted run that this command may resume; UsageError for finished work (without
    --overwrite) or an interrupted run with other settings. Cheap: called before scanning the data too."""
    state_path = layout.training / STATE_FILE
    state = None
    if state_path.is_file():
        try:
            state = read_json(state_path, UsageError, "unreadable run state")
        except UsageError:
            state = {"status": "unreadable"}  # a state file killed mid-write: the run is treated as interrupted
    if state and not config.overwrite:
        if state.get("status") == "done":
            raise UsageError(f"{layout.root}: already holds a trained model; pass --overwrite to replace it, "
                             f"or choose another --out")
        if state.get("settings") != _jsonable(config.resume_key()):
            raise UsageError(f"{layout.root}: holds an interrupted run with other settings; rerun it with the same "
                             f"flags to resume, or pass --overwrite to start again")
        return state
    if not state and (layout.bundle / "edgeship.json").is_file() and not config.overwrite:
        raise UsageError(f"{layout.root}: already holds a bundle; pass --overwrite to replace it, or choose "
                         f"another --out")
    return None


def _jsonable(data: dict) -> dict:
    return json.loads(json.dumps(data, default=str))


def _save_state(layout: RunLayout, config: TrainConfig, status: str, phases_done: list[str]) -> None:
    atomic_write_json(layout.training / STATE_FILE, {"status": status, "phases_done": phases_done,
                                                     "settings": _jsonable(config.resume_key())})


def _best_logged(history_csv: Path, key: str = "val_accuracy") -> float | None:
    if not history_csv.is_file():
        return None
    with open(history_csv, newline="") as handle:
        values = [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]
    return max(values) if values else None


RANK = "val_rank"  # what the best checkpoint and early stopping follow: validation accuracy, ties by loss
RANK_LOSS_WEIGHT = 1e-6  # small enough that loss never outweighs one validation image (losses stay below ~10)


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


def _callbacks(keras, layout: RunLayout, phase: str, config: TrainConfig, epochs: int, floor: float | None,
               extra=()):
    """The rank (first: the others read it), backup for resume (so a logged epoch is always a backed-up one),
    best checkpoint (seeded with the best already logged, so a resumed run never overwrites a better
    checkpoint), CSV log, early stopping and the LR schedule."""
    history_csv = layout.training / HISTORY[phase]
    callbacks = [
        _rank_callback(keras),
        keras.callbacks.BackupAndRestore(str(layout.training / "backup" / phase), double_checkpoint=True),
        keras.callbacks.ModelCheckpoint(str(layout.training / f"best_{phase}.weights.h5"), monitor=RANK, mode="max",
                                        save_best_only=True, save_weights_only=True,
                                        initial_value_threshold=floor),
        *extra,  # precise BatchNorm: recalibrates after an epoch's last step, before Keras validates
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        keras.callbacks.EarlyStopping(monitor=RANK, mode="max", patience=config.hparams.patience),
    ]
    if config.hparams.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                           patience=max(1, config.hparams.patience // 2), verbose=0))
    elif config.hparams.lr_schedule == "cosine":
        base = config.hparams.learning_rate if phase == "phase1" else config.hparams.fine_tune_learning_rate
        callbacks.append(keras.callbacks.LearningRateScheduler(
            lambda epoch: float(base * 0.5 * (1 + np.cos(np.pi * epoch / max(1, epochs))))))
    return callbacks


def _compile(keras, model, learning_rate: float, binary: bool) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy", metrics=["accuracy"])


def _class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """n / (k * count_c): each class contributes equally to the loss."""
    indices = y.reshape(-1).astype(int)
    counts = np.bincount(indices, minlength=n_classes)
    return {c: float(len(indices) / (n_classes * counts[c])) for c in range(n_classes) if counts[c]}


def _fit(keras, model, train_data, val_data, layout, phase, config, epochs, floor, class_weight,
         extra=()) -> tuple[int, str | None]:
    """Fit with resume; load the phase's best weights afterwards. Returns the epochs logged for the phase, and
    why it stopped before EPOCHS when early stopping ended it (None when it ran them all)."""
    best = layout.training / f"best_{phase}.weights.h5"
    verbose = (1 if sys.stdout.isatty() else 2) if config.show_progress else 0
    history_csv = layout.training / HISTORY[phase]
    known = [v for v in (floor, _best_logged(history_csv, RANK)) if v is not None]
    floor = max(known) if known else None
    callbacks = _callbacks(keras, layout, phase, config, epochs, floor, extra)
    model.fit(train_data, validation_data=val_data, epochs=epochs, verbose=verbose, class_weight=class_weight,
              callbacks=callbacks)
    if best.is_file():
        model.load_weights(best)
    logged = _logged_epochs(history_csv)
    stopper = next(c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping))
    note = None
    if stopper.stopped_epoch > 0 and logged < epochs:
        note = (f"{phase} stopped at epoch {logged}/{epochs}: no validation improvement for {config.hparams.patience} "
                f"epochs (--patience {config.hparams.patience}; the best epoch's weights are kept)")
        logger.info(note)
    return logged, note


def weights_sha256(model) -> str:
    """A digest of the weight values (not of the .keras file, whose zip metadata differs run to run): two
    workers, or two runs from one seed, trained the same model exactly when their digests are equal."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def _logged_epochs(history_csv: Path) -> int:
    if not history_csv.is_file():
        return 0
    with open(history_csv, newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def _unfreeze_top(keras, model, n_layers: int) -> int:
    """Make the backbone's top N layers trainable, BatchNorm excepted (frozen = inference mode in Keras 3,
    so fine-tuning does not wreck the pretrained statistics). Returns how many weight layers train."""
    backbone = model.get_layer(BACKBONE_LAYER)
    backbone.trainable = True
    leaves = leaf_layers(backbone)
    cut = max(0, len(leaves) - n_layers)
    trained = 0
    for i, layer in enumerate(leaves):
        layer.trainable = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)
        trained += bool(layer.trainable and layer.weights)
    return trained


SCRATCH_BN_MOMENTUM = 0.9


def _converging_batchnorm(keras, model) -> int:
    """From-scratch backbones: lower BatchNorm momentum (Keras applications use 0.99-0.999) so the moving
    statistics converge within a short training run. With 0.999 MobileNetV3 on the digits reached 99.8 %
    training and 9.5 % validation accuracy: inference used statistics that had barely moved from init."""
    changed = 0
    for layer in leaf_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.momentum > SCRATCH_BN_MOMENTUM:
            layer.momentum = SCRATCH_BN_MOMENTUM
            changed += 1
    return changed


def _build(keras, config: TrainConfig, info: ModelInfo, size: int):
    if config.model.init:
        from edgeship.core.tensorflow import load_keras_model

        model = load_keras_model(Path(config.model.init))
        units, _ = output_units(len(info.labels))
        if model.output_shape[-1] != units or tuple(model.input_shape[1:3]) != (size, size):
            raise BackboneError(f"{config.model.init}: --init model has input {model.input_shape[1:3]} and "
                                f"{model.output_shape[-1]} outputs; this run needs {(size, size)} and {units}")
        return model
    model = build_classifier(config.model.backbone, len(info.labels), size, config.model.weights, head=config.model.head,
                             alpha=config.model.alpha)
    if not config.model.backbone_frozen() and config.model.weights in (None, "", "none", "random"):
        _converging_batchnorm(keras, model)
    return model


def _chance_warning(history_csv: Path, n_classes: int, majority: float) -> str | None:
    """A warning when validation accuracy stays at chance while training accuracy rises: the model (or its
    BatchNorm statistics) does not generalise, and every later figure would describe a useless model."""
    if not history_csv.is_file():
        return None
    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        val = max(float(r["val_accuracy"]) for r in rows)
        train_acc = float(rows[-1]["accuracy"])
    except (KeyError, ValueError):
        return None
    chance = max(1.0 / n_classes, majority)
    if val <= chance + 0.5 * (1 - chance) * 0.2 and train_acc >= val + 0.2:
        return (f"validation accuracy stays near chance ({val:.1%}, chance {chance:.1%}) while training accuracy "
                f"reached {train_acc:.1%}: the model does not generalise (from-scratch BatchNorm statistics, too "
                f"little data, or a learning rate too high); do not ship it")
    return None


def _train_head_on_features(run: "_Run") -> int:
    """Phase 1 on cached features: a small head model trains on memory-mapped backbone outputs, then its
    weights move into the full classifier (same layer names)."""
    keras, model, splits, info, config = run.keras, run.model, run.splits, run.info, run.config
    extractor = feature_model(model)
    fingerprint = {"backbone": config.model.backbone, "size": info.input.height, "resize": info.input.resize,
                   "weights": str(config.model.weights),
                   "alpha": config.model.alpha, "init": config.model.init,
                   "backbone_weights": float(sum(np.asarray(w, dtype=np.float64).sum()
                                                 for w in model.get_layer(BACKBONE_LAYER).get_weights()))}
    cache = run.layout.training / "cache"
    start = time.time()
    features = {name: cached_features(extractor, splits[name].paths, info.input, cache, name,
                                      cache_key(fingerprint, splits[name].paths), config.hparams.batch_size,
                                      config.show_progress) for name in ("train", "val")}
    run.profile["feature_cache"] = _profile_point(start)
    warning = _constant_features_warning(features["train"], config)
    if warning:
        logger.warning(warning)
        run.warnings.append(warning)
    units, activation = output_units(len(info.labels))
    with scope(run.strategy):
        inputs = keras.Input((features["train"].shape[1],), name="features")
        head = keras.Model(inputs, config.model.head.build(keras, inputs, units, activation), name="head")
        _compile(keras, head, config.hparams.learning_rate, units == 1)
    multi_worker_fit(head, run.strategy)
    epochs, note = _fit(keras, head, feature_sequence(features["train"], splits["train"].y, config.hparams.batch_size, True,
                                                      config.seed),
                        feature_sequence(features["val"], splits["val"].y, config.hparams.batch_size, False),
                        run.layout, "phase1", config, config.hparams.epochs, None, run.class_weight)
    run.stopped_early += [note] if note else []
    for layer in head.layers[1:]:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    return epochs


CONSTANT_FEATURES = 1e-6


def _constant_features_warning(features: np.ndarray, config: TrainConfig) -> str | None:
    """A frozen Keras application with random weights computes features of ~1e-10 for every image (its
    BatchNorm statistics are the untrained 0/1): a head on them learns nothing. Measured here on
    MobileNetV2, MobileNetV3-Small and EfficientNet-B0 at 224 px; small_cnn's random features do vary."""
    sample = np.asarray(features[:2048], dtype=np.float64)
    spread = float(sample.std(axis=0).max()) if len(sample) > 1 else 1.0
    if spread >= CONSTANT_FEATURES:
        return None
    return (f"the frozen backbone gives every image the same features (largest spread {spread:.1e}): "
            f"{config.model.backbone} with weights={config.model.weights or 'none'} has nothing to offer a head; pass "
            f"--weights imagenet (or a weights file), or train it whole without --freeze-backbone")


def _sequences(splits, info, config, augmenter):
    def make(name, shuffle, augment=None):
        return make_sequence(splits[name].paths, splits[name].y, info.input, config.hparams.batch_size, shuffle,
                             config.seed, desc=f"load {name} images", show_progress=config.show_progress,
                             augment=augment)

    return make("train", True, augmenter), make("val", False)


def _predict(model, paths, info, config, desc: str = "evaluate") -> np.ndarray:
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


def _train_run(data_dir: Path, out_dir: Path, config: TrainConfig, role: WorkerRole) -> TrainResult:
    started = time.time()
    layout = RunLayout(out_dir)
    layout.check_claimable()  # before scanning: a folder of the user's own files is refused at once
    _check_resumable(layout, config)  # and so is finished work without --overwrite
    size = get_backbone(config.model.backbone).input_size(config.model.image_size)  # fails before any scanning (hub: no network yet)
    dataset, fixed_test = scan_dataset(data_dir, config.data.classes, config.show_progress)
    info = ModelInfo(labels=dataset.classes, input=InputSpec(height=size, width=size, resize=config.model.resize),
                     task="binary" if len(dataset.classes) == 2 else "multiclass")
    splits = make_splits(dataset, config.data.splits, fixed_test)  # a dataset that cannot be split fails here, before any write
    fresh = not layout.root.exists()
    with run_lock(layout.root, "train"):
        layout.claim()
        try:
            return replace(_train_in(layout, dataset, fixed_test, splits, info, size, config, started), role=role)
        except EdgeshipError:
            if fresh and not (layout.training / STATE_FILE).is_file() and not layout.foreign_entries():
                shutil.rmtree(layout.root, ignore_errors=True)  # refused before training began: leave nothing
            raise


@dataclass
class _Run:
    """What the named phases of one training run share."""

    layout: RunLayout
    config: TrainConfig
    dataset: ScannedDataset
    fixed_test: set[Path] | None
    info: ModelInfo
    size: int
    started: float
    state: dict | None = None
    manifest: SplitManifest | None = None
    split_sha: str | None = None
    splits: dict[str, _Split] = field(default_factory=dict)
    augmenter: Augmenter | None = None
    keras: object = None
    strategy: object = None
    model: object = None
    class_weight: dict[int, float] | None = None
    phases_done: list[str] = field(default_factory=list)
    profile: dict[str, dict] = field(default_factory=dict)  # per phase: seconds, peak RSS so far
    epochs: dict[str, int] = field(default_factory=dict)
    fine_tuned: int = 0
    precise_batchnorm: bool = False  # BatchNorm statistics recomputed before each validation (precise_bn)
    stopped_early: list[str] = field(default_factory=list)  # why a phase ended before its epochs
    warnings: list[str] = field(default_factory=list)

    @property
    def binary(self) -> bool:
        return self.info.task == "binary"


def _train_in(layout: RunLayout, dataset: ScannedDataset, fixed_test, fresh_splits: SplitManifest, info: ModelInfo,
              size: int, config: TrainConfig, started: float) -> TrainResult:
    run = _Run(layout, config, dataset, fixed_test, info, size, started)
    run.profile["scan_split"] = _profile_point(started)  # scanning and splitting happened before the lock
    _profiled(run, _prepare_splits, run, fresh_splits)
    for phase in (_build_model, _train_phase1, _train_phase2):
        _profiled(run, phase, run)
    evaluation = _profiled(run, _evaluate, run)
    bundle = _write_bundle(run, evaluation)
    return TrainResult(layout, bundle, float(evaluation["accuracy"]), sum(run.epochs.values()),
                       bundle.provenance["training"]["weights_sha256"], stopped_early=list(run.stopped_early))


def _profile_point(since: float) -> dict:
    """Seconds since SINCE, and the process's peak RSS so far (MiB): the scale benchmark reads these."""
    return {"seconds": round(time.time() - since, 2),
            "peak_rss_mib": round(peak_rss_mb() or 0.0, 1)}


def _profiled(run: _Run, phase, *args):
    start = time.time()
    result = phase(*args)
    run.profile[phase.__name__.lstrip("_")] = _profile_point(start)
    return result


def _progress_so_far(layout: RunLayout, config: TrainConfig, state: dict) -> str:
    """What an interrupted run already finished: whole phases, and the epochs logged in the phase it was in."""
    done = list(state.get("phases_done") or [])
    parts = [f"{phase} complete" for phase in done]
    for phase, planned in (("phase1", config.hparams.epochs), ("phase2", config.hparams.fine_tune_epochs)):
        logged = _logged_epochs(layout.training / HISTORY[phase])
        if phase not in done and logged:
            parts.append(f"{logged} of {planned} epoch(s) of {phase}; it continues from epoch {logged + 1}")
    return "; ".join(parts) or "nothing yet"


def _prepare_splits(run: _Run, fresh_splits: SplitManifest) -> None:
    """Resume or start: the split manifest on disk (reused when resuming), the splits as (paths, y)."""
    layout, config = run.layout, run.config
    run.state = _prepare_run(layout, config)
    layout.bundle.mkdir(parents=True, exist_ok=True)
    layout.training.mkdir(parents=True, exist_ok=True)
    if run.state and (layout.bundle / SPLITS_FILE).is_file():
        run.manifest = SplitManifest.read(layout.bundle / SPLITS_FILE)
        logger.warning(f"resuming the interrupted run in {layout.root} (done: {_progress_so_far(layout, config, run.state)})")
    else:
        run.manifest = fresh_splits
        run.manifest.write(layout.bundle / SPLITS_FILE)
    run.split_sha = sha256_file(layout.bundle / SPLITS_FILE)
    run.phases_done = list(run.state.get("phases_done", [])) if run.state else []
    for name in ("train", "val", "test"):
        paths, y = run.manifest.paths_and_indices(name, run.info.labels)
        run.splits[name] = _Split(paths, y.astype(np.float32).reshape(-1, 1) if run.binary else y)
    if config.hparams.augment.enabled:
        run.augmenter = Augmenter(config.hparams.augment, config.seed)
        preview_augmentation(run.splits["train"].paths[:4], run.info.input, config.hparams.augment,
                             layout.training / "augmentation.png", seed=config.seed)


def _build_model(run: _Run) -> None:
    """Build (or load --init), refuse what cannot fit in memory, then mark the run resumable."""
    config = run.config
    _, run.keras = import_keras()
    run.strategy = make_strategy(config.hparams.strategy)  # first: a multi-worker strategy must precede other TF work
    run.keras.utils.set_random_seed(config.seed)
    with scope(run.strategy), captured_output():
        run.model = _build(run.keras, config, run.info, run.size)
    multi_worker_fit(run.model, run.strategy)
    check_fits(run.model, config.hparams.batch_size, trains_backbone=not config.model.backbone_frozen() or bool(config.hparams.fine_tune_epochs),
               eval_images=min(CHUNK_IMAGES, max(len(run.splits["val"].paths), len(run.splits["test"].paths))))
    _save_state(run.layout, config, "running", run.phases_done)  # from here on a rerun resumes
    if config.hparams.class_weights:
        run.class_weight = _class_weights(run.splits["train"].y, len(run.info.labels))


def _train_phase1(run: _Run) -> None:
    """The head on cached features (frozen backbone), or the whole model (from scratch)."""
    layout, config, keras, model = run.layout, run.config, run.keras, run.model
    if "phase1" in run.phases_done:
        model.load_weights(layout.training / "phase1.weights.h5")
        run.epochs["phase1"] = _logged_epochs(layout.training / HISTORY["phase1"])
        return
    frozen = config.model.backbone_frozen()
    if frozen and config.hparams.cache_features:
        run.epochs["phase1"] = _train_head_on_features(run)
    else:
        model.get_layer(BACKBONE_LAYER).trainable = not frozen
        with scope(run.strategy):
            _compile(keras, model, config.hparams.learning_rate, run.binary)
        train_seq, val_seq = _sequences(run.splits, run.info, config, run.augmenter)
        extra = ()
        if precise_bn.wanted(model, len(train_seq), run.strategy):
            extra = (precise_bn.callback(model, lambda: train_seq.plain_batches(precise_bn.MAX_BATCHES), len(train_seq)),)
            run.precise_batchnorm = True
        run.epochs["phase1"], note = _fit(keras, model, train_seq, val_seq, layout, "phase1", config, config.hparams.epochs,
                                          None, run.class_weight, extra)
        run.stopped_early += [note] if note else []
    model.save_weights(layout.training / "phase1.weights.h5")
    run.phases_done.append("phase1")
    _save_state(layout, config, "running", run.phases_done)


def _train_phase2(run: _Run) -> None:
    """Fine-tune the top backbone layers (frozen-backbone runs with --fine-tune-epochs)."""
    layout, config, keras, model = run.layout, run.config, run.keras, run.model
    if not (config.model.backbone_frozen() and config.hparams.fine_tune_epochs) or "phase2" in run.phases_done:
        return
    floor = _best_logged(layout.training / HISTORY["phase1"], RANK)
    with scope(run.strategy):
        run.fine_tuned = _unfreeze_top(keras, model, config.hparams.fine_tune_layers)
        _compile(keras, model, config.hparams.fine_tune_learning_rate, run.binary)
    train_seq, val_seq = _sequences(run.splits, run.info, config, run.augmenter)
    run.epochs["phase2"], note = _fit(keras, model, train_seq, val_seq, layout, "phase2", config,
                                      config.hparams.fine_tune_epochs, floor, run.class_weight)
    run.stopped_early += [note] if note else []
    if not (layout.training / "best_phase2.weights.h5").is_file():  # fine-tuning never beat phase 1
        model.load_weights(layout.training / "phase1.weights.h5")
    run.phases_done.append("phase2")
    _save_state(layout, config, "running", run.phases_done)


def _evaluate(run: _Run) -> dict:
    """The unknown threshold from validation, then the test split's figures (and the OOD rejection rate)."""
    config, model = run.config, run.model
    warning = _chance_warning(run.layout.training / HISTORY["phase1"], len(run.info.labels),
                              majority_accuracy(run.splits["val"].y))
    if warning:
        logger.warning(warning)
        run.warnings.append(warning)
    val_probs = _predict(model, run.splits["val"].paths, run.info, config, "evaluate val")
    val_labels = run.splits["val"].y.reshape(-1).astype(int)
    never, present = never_predicted(val_probs.argmax(axis=1), val_labels, run.info.labels), len(set(val_labels.tolist()))
    if predictions_collapsed(never, present):
        warning = (f"{describe_collapse(never, present, 'validation')}: its predictions "
                   f"collapsed onto a few classes; train longer (--epochs, --patience) or with more data before "
                   f"shipping it (the gate fails such a model unless --allow-collapsed)")
        logger.warning(warning)
        run.warnings.append(warning)
    threshold = unknown_threshold(val_probs, config.data.unknown_recall) if config.data.unknown_recall else None
    run.info = ModelInfo(run.info.labels, run.info.input, run.info.task, threshold)
    test = run.splits["test"]
    test_probs = _predict(model, test.paths, run.info, config, "evaluate test")
    evaluation = evaluate_test(test_probs, test.y.reshape(-1).astype(int), run.info.labels, test.paths,
                               run.info.input, run.layout.training)
    if threshold is not None:
        evaluation["unknown"] = {"threshold": threshold, "target_val_recall": config.data.unknown_recall,
                                 "test_rejection_rate": rejection_rate(test_probs, threshold)}
        if config.data.ood_dir:
            ood = _ood_paths(config.data.ood_dir)
            evaluation["unknown"].update(ood_dir=str(config.data.ood_dir), ood_images=len(ood),
                                         ood_rejection_rate=rejection_rate(_predict(model, ood, run.info, config),
                                                                           threshold))
    return evaluation


def _write_bundle(run: _Run, evaluation: dict) -> Bundle:
    """model.keras, labels, curves, edgeship.json with provenance, the training report; then state 'done'."""
    layout, config = run.layout, run.config
    model_path = layout.bundle / MODEL_FILE
    set_synchronized_batchnorm(run.model, False)
    tmp = model_path.with_name(f".{model_path.stem}.tmp.keras")  # Keras insists on the .keras suffix
    run.model.save(tmp)
    tmp.replace(model_path)
    for phase in ("phase1", "phase2"):
        if (layout.training / HISTORY[phase]).is_file():
            plot_history(layout.training / HISTORY[phase], layout.training / ("curves.png" if phase == "phase1"
                                                                               else "curves_fine_tune.png"))
    atomic_write_text(layout.bundle / "labels.txt", "\n".join(run.info.labels) + "\n")
    frozen = config.model.backbone_frozen()
    training = {
        "backbone": config.model.backbone, "image_size": run.size, "weights": config.model.weights or "none", "init": config.model.init,
        "frozen_backbone": frozen, "cached_features": frozen and config.hparams.cache_features,
        "epochs_requested": config.hparams.epochs, "fine_tune_epochs_requested": config.hparams.fine_tune_epochs,
        "epochs_run": sum(run.epochs.values()), "epochs_per_phase": run.epochs, "fine_tuned_layers": run.fine_tuned,
        "augment": config.hparams.augment.describe(), "class_weights": run.class_weight,
        "strategy": config.hparams.strategy or "default", "head": asdict(config.model.head), "lr_schedule": config.hparams.lr_schedule,
        "best_val_accuracy": max(v for v in (_best_logged(layout.training / h) for h in HISTORY.values())
                                 if v is not None),
        "test_accuracy": evaluation["accuracy"], "seconds": round(time.time() - run.started, 1),
        "weights_sha256": weights_sha256(run.model),
        "profile": run.profile,  # seconds and peak RSS so far, per phase
        # A TF-Hub backbone is a TFSMLayer: Keras reloads it only with safe_mode=False (see hub.py)
        "keras_safe_mode": not config.model.backbone.startswith(HUB_PREFIX),
        "precise_batchnorm": run.precise_batchnorm,
        "stopped_early": run.stopped_early,
        "warnings": run.warnings,
    }
    bundle = Bundle(info=run.info, keras_model=MODEL_FILE, split_manifest=SPLITS_FILE, provenance={
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_sha256": sha256_file(model_path),
        "dataset": {**run.dataset.summary(), "layout": "list files" if run.fixed_test is not None else "class folders"},
        "split": {"file": SPLITS_FILE, "sha256": run.split_sha, "counts": run.manifest.counts(), **asdict(config.data.splits)},
        "training": training,
        "versions": library_versions(),
    })
    bundle.save(layout.bundle)
    from .training_report import write_training_report

    write_training_report(layout, bundle, evaluation)
    _save_state(layout, config, "done", run.phases_done)
    return bundle
