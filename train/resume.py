"""An interrupted run's state, in one place: load it, check it against the command that resumes it, save it.

`training/state.json` records the status (`running` until the bundle is written, then `done`), the phases
finished and the settings that must match on resume (`TrainConfig.resume_key()`). Keras' BackupAndRestore
resumes inside a phase; the epoch CSV logs say how far each phase got.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edgeship.core.layout import RunLayout
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import atomic_write_json, read_json

from .options import TrainConfig

STATE_FILE = "state.json"
HISTORY = {"phase1": "history.csv", "phase2": "history_fine_tune.csv"}  # per phase: its epoch log
logger = logging.getLogger("edgeship")


@dataclass(frozen=True)
class RunState:
    """What state.json says: `status` running | done | unreadable (damaged by hand: never resumed)."""

    status: str
    phases_done: tuple[str, ...] = ()
    settings: dict | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"


def load_state(layout: RunLayout) -> RunState | None:
    path = layout.training / STATE_FILE
    if not path.is_file():
        return None
    try:
        data = read_json(path, UsageError, "unreadable run state")
    except UsageError:
        return RunState("unreadable")
    return RunState(str(data.get("status")), tuple(data.get("phases_done") or ()), data.get("settings"))


def save_state(layout: RunLayout, config: TrainConfig, status: str, phases_done) -> None:
    atomic_write_json(layout.training / STATE_FILE, {"status": status, "phases_done": list(phases_done),
                                                     "settings": _jsonable(config.resume_key())})


def check_resumable(layout: RunLayout, config: TrainConfig) -> RunState | None:
    """The state of an interrupted run that this command may resume; UsageError for finished work (without
    --overwrite) or an interrupted run with other settings. Cheap: called before scanning the data too."""
    state = load_state(layout)
    if config.overwrite:
        return None
    if state:
        if state.done:
            raise UsageError(f"{layout.root}: already holds a trained model; pass --overwrite to replace it, "
                             f"or choose another --out")
        if state.status == "unreadable":
            raise UsageError(f"{layout.root}: holds an interrupted run whose {STATE_FILE} cannot be read, so its "
                             f"settings are unknown; pass --overwrite to start again")
        if state.settings != _jsonable(config.resume_key()):
            raise UsageError(f"{layout.root}: holds an interrupted run with other settings; rerun it with the same "
                             f"flags to resume, or pass --overwrite to start again")
        return state
    if (layout.bundle / "edgeship.json").is_file():
        raise UsageError(f"{layout.root}: already holds a bundle; pass --overwrite to replace it, or choose "
                         f"another --out")
    return None


def prepare_run(layout: RunLayout, config: TrainConfig) -> RunState | None:
    """The interrupted run's state to resume, or None for a fresh start. Refuses to overwrite finished
    work unless asked to; even then removes only what edgeship wrote (the report first)."""
    state = check_resumable(layout, config)
    if state:
        return state
    kept = layout.remove_owned()  # cached features (training/cache) are keyed: a new run reuses what matches
    if kept:
        logger.warning(f"{layout.root}: kept {len(kept)} file(s) edgeship did not write "
                       f"({', '.join(p.relative_to(layout.root).as_posix() for p in kept[:3])}"
                       f"{' …' if len(kept) > 3 else ''})")
    return None


def logged_epochs(history_csv: Path) -> int:
    if not history_csv.is_file():
        return 0
    with open(history_csv, newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def best_logged(history_csv: Path, key: str = "val_accuracy") -> float | None:
    if not history_csv.is_file():
        return None
    with open(history_csv, newline="") as handle:
        values = [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]
    return max(values) if values else None


def progress_so_far(layout: RunLayout, config: TrainConfig, state: RunState) -> str:
    """What an interrupted run already finished: whole phases, and the epochs logged in the phase it was in."""
    parts = [f"{phase} complete" for phase in state.phases_done]
    for phase, planned in (("phase1", config.hparams.epochs), ("phase2", config.hparams.fine_tune_epochs)):
        logged = logged_epochs(layout.training / HISTORY[phase])
        if phase not in state.phases_done and logged:
            parts.append(f"{logged} of {planned} epoch(s) of {phase}; it continues from epoch {logged + 1}")
    return "; ".join(parts) or "nothing yet"


def _jsonable(data: dict) -> dict:
    return json.loads(json.dumps(data, default=str))
