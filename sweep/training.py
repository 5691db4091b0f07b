"""Train one candidate that fits the budget, with the study's pruner watching every epoch, then export it.

Successive halving (Optuna's SuccessiveHalvingPruner, asynchronous so several workers share it): each epoch
reports the candidate's validation accuracy; at each rung (1, 3, 9, … epochs) a candidate not among the best
third of those that reached the rung stops there. One that survives is exported in the formats whose cost was
within budget, and scored on the validation split as those artifacts (export.val_check): that is what a sweep
chooses on. Its run directory is a normal edgeship run: gate, bench and predict take it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .space import Architecture

logger = logging.getLogger("edgeship")


@dataclass
class TrainingPlan:
    epochs: int = 9  # the most any candidate trains (the last rung)
    batch_size: int = 32
    seed: int = 0
    fine_tune_epochs: int = 3  # phase 2 of a pretrained candidate with fine_tune_layers > 0


@dataclass
class TrainedCandidate:
    key: str
    run: str
    epochs: int
    pruned_at: int | None = None  # the epoch the pruner stopped it at
    val: dict = field(default_factory=dict)  # format -> export.val_check.ValFigures as JSON
    export_failed: list[str] = field(default_factory=list)


def train_config(arch: Architecture, plan: TrainingPlan, watchers: Sequence[Callable] = ()):
    from edgeship.core.splits import SplitConfig
    from edgeship.train import TrainConfig

    tuned = arch.pretrained and arch.fine_tune_layers > 0
    return TrainConfig(backbone=arch.backbone, image_size=arch.image_size, alpha=arch.alpha,
                       weights=None if not arch.pretrained else arch.weights, epochs=plan.epochs,
                       fine_tune_epochs=plan.fine_tune_epochs if tuned else 0,
                       fine_tune_layers=arch.fine_tune_layers or 20, batch_size=plan.batch_size,
                       splits=SplitConfig(seed=plan.seed), show_progress=False, epoch_watchers=tuple(watchers))


def _trained(run: Path) -> bool:
    from edgeship.core.layout import RunLayout
    from edgeship.train.resume import load_state

    state = load_state(RunLayout(run))
    return bool(state and state.done)


def train_candidate(trial, arch: Architecture, data: Path, run: Path, formats: Sequence[str], plan: TrainingPlan,
                    max_drop: float, on_epoch: Callable[[int], None] | None = None,
                    also_backends: Sequence[str] = ()) -> TrainedCandidate:
    """Train ARCH into RUN (resuming what a killed attempt left), reporting to TRIAL; export FORMATS unless pruned
    (with parity under ALSO_BACKENDS too: tflm for a microcontroller's sweep)."""
    from edgeship.export import export_run
    from edgeship.export.val_check import val_figures
    from edgeship.train import train

    pruned: list[int] = []

    def watch(phase: str, epoch: int, logs: dict) -> bool:
        step = epoch if phase == "phase1" else plan.epochs + epoch
        if "val_accuracy" in logs:
            trial.report(float(logs["val_accuracy"]), step)
        if on_epoch:
            on_epoch(step)
        if trial.should_prune():
            pruned.append(step)
            return True
        return False

    if not _trained(run):
        result = train(data, run, train_config(arch, plan, (watch,)))
        epochs = result.epochs_run
    else:  # trained by an attempt killed before it reported back: its run is whole, do not train again
        from edgeship.runtime.spec import Bundle

        epochs = int(Bundle.load(run / "bundle").provenance["training"]["epochs_run"])
    outcome = TrainedCandidate(arch.key, str(run), epochs, pruned[0] if pruned else None)
    if pruned:
        return outcome
    exported = export_run(run, formats=list(formats), max_drop=max_drop, show_progress=False,
                          also_backends=tuple(also_backends))
    outcome.export_failed = list(exported.failed)
    ok = [name for name in formats if name not in exported.failed]
    outcome.val = {name: figures.to_json() for name, figures in val_figures(run, ok).items()}
    return outcome
