"""Where things live in a run directory, which files edgeship owns there, and the one-writer lock.

Every command accepts either the run or its bundle. A run directory may also hold the user's own files;
edgeship only ever removes the paths that match `owned_patterns()` below.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgeship.runtime.errors import UsageError
from edgeship.runtime.spec import MANIFEST_NAME

from .errors import RunBusyError

BUNDLE_DIR = "bundle"
TRAINING_DIR = "training"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REFERENCE_PROBS = "reference_probs.npy"  # Keras' probabilities per test image: on-target gates compare with them
RUN_MARKER = ".edgeship-run"  # written first: a run killed in its first second is still recognised as ours
LOCK_FILE = ".edgeship.lock"
NPU_DIR = "npu"  # Vela's optimized .tflite files, one per artifact and Ethos-U configuration (bench --npu)
TMP_DIR = ".edgeship-tmp"  # conversions' scratch space: inside the run, so a killed export's leftovers are found

# Paths (globs relative to the run root) that edgeship writes. `train --overwrite` removes these and
# nothing else; the report comes first so that a half-finished removal never leaves a report standing.
# What a killed writer leaves in the bundle: atomic writes' temp files, a half-swapped SavedModel, Keras' temp model.
BUNDLE_TEMP_PATTERNS = (f"{BUNDLE_DIR}/.*.tmp", f"{BUNDLE_DIR}/.*.old", f"{BUNDLE_DIR}/.*.tmp.keras")
OWNED = (
    REPORT_JSON, REPORT_MD, REFERENCE_PROBS, "report_accuracy.png", "report_layers.png", "bench.json", "bench.csv", "bench.md", "bench_pareto.png", "bench_profile.png",
    f"{BUNDLE_DIR}/{MANIFEST_NAME}", f"{BUNDLE_DIR}/model.keras", f"{BUNDLE_DIR}/splits.csv",
    f"{BUNDLE_DIR}/labels.txt", f"{BUNDLE_DIR}/model_*.tflite", f"{BUNDLE_DIR}/model_*.onnx", f"{BUNDLE_DIR}/model_*.ort",
    f"{BUNDLE_DIR}/model_*_c", f"{BUNDLE_DIR}/saved_model", NPU_DIR, *BUNDLE_TEMP_PATTERNS, f"{TRAINING_DIR}/.*.tmp",
    f"{TRAINING_DIR}/state.json", f"{TRAINING_DIR}/history*.csv", f"{TRAINING_DIR}/*.weights.h5",
    f"{TRAINING_DIR}/backup", f"{TRAINING_DIR}/*.png", f"{TRAINING_DIR}/report.md", f"{TRAINING_DIR}/report.json",
    "explain/*_gradcam_*.png", "explore", TMP_DIR,
)


def owned_patterns() -> tuple[str, ...]:
    """OWNED plus the bundle file of every export format registered in this process (a user's own included; the
    built-in ones are all matched by OWNED, so this holds where export's converters were never imported)."""
    from .formats import bundle_files

    extra = [f"{BUNDLE_DIR}/{name}" for name in bundle_files()]
    return OWNED + tuple(p for p in extra if p not in OWNED)


@dataclass(frozen=True)
class RunLayout:
    """RUN/bundle (the model bundle), RUN/training (logs, curves) and RUN/report.{json,md}."""

    root: Path

    @property
    def bundle(self) -> Path:
        return self.root / BUNDLE_DIR

    @property
    def training(self) -> Path:
        return self.root / TRAINING_DIR

    @property
    def report_json(self) -> Path:
        return self.root / REPORT_JSON

    @property
    def report_md(self) -> Path:
        return self.root / REPORT_MD

    @property
    def scratch(self) -> Path:
        return self.root / TMP_DIR

    def is_run(self) -> bool:
        """True when edgeship made this directory (today's marker, or a bundle/state from older versions)."""
        return any(p.is_file() for p in (self.root / RUN_MARKER, self.bundle / MANIFEST_NAME,
                                         self.training / "state.json"))

    def foreign_entries(self) -> list[Path]:
        """Entries in the folders edgeship writes (the run, bundle/, training/, explain/) that it did not
        write: the user's own files and folders, listed at the level where they start."""
        owned = set(self.owned_paths())
        ours = {self.root / RUN_MARKER, self.root / LOCK_FILE, self.training / "cache"}
        folders = (self.root, self.bundle, self.training, self.root / "explain")
        found = []
        for folder in folders:
            if folder.is_dir():
                found += [p for p in sorted(folder.iterdir())
                          if p not in owned and p not in ours and p not in folders]
        return found

    def owned_paths(self) -> list[Path]:
        """Existing paths edgeship wrote, in removal order (the report first)."""
        found: list[Path] = []
        for pattern in owned_patterns():
            found += [p for p in sorted(self.root.glob(pattern)) if p not in found]
        return found

    def remove_owned(self) -> list[Path]:
        """Remove what edgeship wrote (report first), keep everything else; returns what was kept."""
        for path in self.owned_paths():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        return self.foreign_entries()

    def check_claimable(self) -> None:
        """Refuse a --out that is a file, or a folder of somebody else's files (not an edgeship run)."""
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"{self.root}: is a file; --out must be a directory")
        if self.root.is_dir() and not self.is_run():
            entries = [p for p in self.root.iterdir() if p.name != LOCK_FILE]
            if entries:
                shown = ", ".join(p.name for p in entries[:3]) + (" …" if len(entries) > 3 else "")
                raise UsageError(f"{self.root}: is not empty and not an edgeship run (holds {shown}); choose a new "
                                 f"or empty --out folder so none of your files can be overwritten")

    def claim(self) -> None:
        """Mark a new or empty directory as an edgeship run (see check_claimable)."""
        self.check_claimable()
        self.root.mkdir(parents=True, exist_ok=True)
        marker = self.root / RUN_MARKER
        if not marker.is_file():
            from edgeship.runtime.fileio import atomic_write_json

            atomic_write_json(marker, {"tool": "edgeship", "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def clean_scratch(self) -> None:
        """Remove what a killed export left behind: scratch folders and half-written temp files."""
        shutil.rmtree(self.scratch, ignore_errors=True)
        for pattern in (*BUNDLE_TEMP_PATTERNS, ".*.tmp"):
            for path in self.root.glob(pattern):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    @classmethod
    def find(cls, path: str | Path) -> "RunLayout":
        """Accept a run directory, its bundle directory or its report.json."""
        path = Path(path)
        if path.is_file() and path.name == REPORT_JSON:
            path = path.parent
        if (path / BUNDLE_DIR / MANIFEST_NAME).is_file():
            return cls(path)
        if (path / MANIFEST_NAME).is_file() and path.name == BUNDLE_DIR:
            return cls(path.parent)
        if not path.exists():
            raise UsageError(f"{path}: no such run directory")
        raise UsageError(f"{path}: not an edgeship run (expected {BUNDLE_DIR}/{MANIFEST_NAME}); run `edgeship train` first")


_held: dict[Path, int] = {}  # run -> the thread of this process that holds its lock
_held_guard = threading.Lock()


def _read_holder(handle) -> dict:
    """The lock holder's {pid, command}. It writes them just after taking the lock: a loser that reads in
    between finds the file empty, so it looks again for up to a second (seen on a loaded 2-core machine)."""
    for _ in range(50):
        handle.seek(0)
        try:
            holder = json.loads(handle.read() or "{}")
        except json.JSONDecodeError:
            holder = {}
        if holder.get("pid"):
            return holder
        time.sleep(0.02)
    return holder


def _open_lock_file(path: Path):
    """The lock file, opened without following a link and refused unless it is a regular file of ours that
    holds nothing but a lock record: a link or a hard link there must never make edgeship overwrite (or
    truncate) the user's file it points to."""
    import stat

    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        if path.is_symlink():
            raise UsageError(f"{path}: is a symbolic link, not edgeship's lock file; remove it and run again") from None
        raise  # a read-only or full disk: the CLI names it
    handle = os.fdopen(fd, "r+")
    info = os.fstat(fd)
    problem = ("not a regular file" if not stat.S_ISREG(info.st_mode)
               else "a hard link to another file" if info.st_nlink != 1 else None)
    if problem:
        handle.close()
        raise UsageError(f"{path}: is {problem}, not edgeship's lock file; remove it and run again")
    return handle


def _check_lock_content(handle, path: Path) -> None:
    """Held lock, before the first write: the file must be empty or a lock record (never truncate a file
    edgeship did not write)."""
    handle.seek(0)
    text = handle.read(4097)
    try:
        record = json.loads(text) if text else {}
    except ValueError:
        record = None
    if not isinstance(record, dict) or not set(record) <= {"pid", "command"}:
        raise UsageError(f"{path}: holds something other than edgeship's lock record; move it away and run again")


@contextmanager
def run_lock(root: str | Path, command: str):
    """One writer per run directory: a second train/export/bench on the same run fails at once with the
    holder's pid instead of interleaving its writes. Re-entrant within one thread (export's re-check inside
    a held export, say); another thread of the same process is refused like another process. The lock is an
    flock, so a killed holder never leaves a stale lock."""
    root = Path(root).resolve()
    with _held_guard:
        nested = _held.get(root) == threading.get_ident()
    if nested:
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    handle = _open_lock_file(root / LOCK_FILE)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no flock; one writer is then the user's job
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(handle)
                raise RunBusyError(f"{root}: another edgeship {holder.get('command', 'command')} is running on this "
                                   f"run (pid {holder.get('pid', '?')}); wait for it to finish") from None
        _check_lock_content(handle, root / LOCK_FILE)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "command": command}))
        handle.flush()
        with _held_guard:
            _held[root] = threading.get_ident()
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(root, None)
    finally:
        handle.close()
