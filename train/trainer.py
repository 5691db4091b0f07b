"""`train()`: scan -> split -> build -> fit (best checkpoint, CSV log) -> bundle."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence


from edgeship.runtime.fileio import atomic_write_text, sha256_file
from edgeship.runtime.layout import RunLayout
from edgeship.runtime.spec import Bundle, InputSpec, ModelInfo

from .backbones import build_classifier, get_backbone
from .dataset import scan_folder
from .loader import make_sequence
from .plots import plot_history
from .splits import SplitConfig, make_splits
from .tfenv import import_keras
from edgeship.runtime.environment import library_versions

MODEL_FILE = "model.keras"
SPLITS_FILE = "splits.csv"


@dataclass
class TrainConfig:
    backbone: str = "small_cnn"
    image_size: int | None = None
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    weights: str | None = None
    alpha: float | None = None
    dropout: float = 0.2
    patience: int = 5
    classes: Sequence[str] | None = None
    splits: SplitConfig = field(default_factory=SplitConfig)
    show_progress: bool = True

    @property
    def seed(self) -> int:
        return self.splits.seed


@dataclass
class TrainResult:
    layout: RunLayout
    bundle: Bundle
    test_accuracy: float
    epochs_run: int


def _save_keras_atomically(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def train(data_dir: str | Path, out_dir: str | Path, config: TrainConfig = TrainConfig()) -> TrainResult:
    """Train a classifier on a folder of class sub-folders and write the run directory."""
    started = time.time()
    dataset = scan_folder(data_dir, config.classes, show_progress=config.show_progress)
    spec = get_backbone(config.backbone)  # fail on a bad name before TensorFlow loads
    size = config.image_size or spec.default_size
    input_spec = InputSpec(height=size, width=size)
    info = ModelInfo(labels=dataset.classes, input=input_spec)

    layout = RunLayout(Path(out_dir))
    layout.bundle.mkdir(parents=True, exist_ok=True)
    layout.training.mkdir(parents=True, exist_ok=True)
    manifest = make_splits(dataset, config.splits)
    split_sha = manifest.write(layout.bundle / SPLITS_FILE)

    tf, keras = import_keras()
    keras.utils.set_random_seed(config.seed)
    model = build_classifier(config.backbone, len(dataset.classes), size, config.weights, config.dropout,
                             alpha=config.alpha)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def sequence(split, shuffle):
        paths, labels = manifest.paths_and_indices(split, info.labels)
        return make_sequence(paths, labels, input_spec, config.batch_size, shuffle, config.seed,
                             desc=f"load {split} images", show_progress=config.show_progress)

    train_seq, val_seq, test_seq = sequence("train", True), sequence("val", False), sequence("test", False)
    best_path = layout.training / "best.keras"
    history_csv = layout.training / "history.csv"
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(best_path), monitor="val_accuracy", save_best_only=True),
        keras.callbacks.CSVLogger(str(history_csv)),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=config.patience, restore_best_weights=True),
    ]
    verbose = (1 if sys.stdout.isatty() else 2) if config.show_progress else 0
    history = model.fit(train_seq, validation_data=val_seq, epochs=config.epochs, callbacks=callbacks,
                        verbose=verbose)
    if best_path.is_file():
        model = keras.models.load_model(best_path, safe_mode=True)
    _, test_accuracy = model.evaluate(test_seq, verbose=0)
    model_path = layout.bundle / MODEL_FILE
    _save_keras_atomically(model, model_path)
    plot_history(history_csv, layout.training / "curves.png")
    atomic_write_text(layout.bundle / "labels.txt", "\n".join(info.labels) + "\n")

    epochs_run = len(history.history.get("loss", []))
    bundle = Bundle(
        info=info,
        keras_model=MODEL_FILE,
        split_manifest=SPLITS_FILE,
        provenance={
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model_sha256": sha256_file(model_path),
            "dataset": dataset.summary(),
            "split": {"file": SPLITS_FILE, "sha256": split_sha, "counts": manifest.counts(),
                      **{k: v for k, v in asdict(config.splits).items()}},
            "training": {
                "backbone": config.backbone,
                "image_size": size,
                "weights": config.weights or "none",
                "epochs_requested": config.epochs,
                "epochs_run": epochs_run,
                "best_val_accuracy": float(max(history.history.get("val_accuracy", [float("nan")]))),
                "test_accuracy": float(test_accuracy),
                "seconds": round(time.time() - started, 1),
            },
            "versions": library_versions(),
        },
    )
    bundle.save(layout.bundle)
    return TrainResult(layout, bundle, float(test_accuracy), epochs_run)
