"""The sweep's ledger is an Optuna study: trials queued once, claimed by one worker each, resumable after a kill.

Storage is a SQLite file in SWEEP by default (one machine needs nothing more) or any Optuna RDB URL
(`postgresql://…`), which several workers share. Every candidate is enqueued once, by the worker that created
the study (creation is atomic in the database, so two workers starting together cannot both queue). A worker
claims a queued trial with the same compare-and-set Optuna's own `ask()` uses (WAITING -> RUNNING, refused when
another worker got there first), so no trial runs twice. A trial whose worker died (SIGKILL, a lost machine) is
marked failed and queued again with the same candidate: nothing is lost, and finished trials are never redone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Sequence

from edgeship.runtime.errors import UsageError

logger = logging.getLogger("edgeship")
CANDIDATE = "candidate"  # the one parameter of every trial: the architecture's key
STALE_SECONDS = 600.0  # a trial of another machine whose heartbeat is older than this is taken as dead
BEAT_SECONDS = 60.0  # how often a running trial says it is alive
WAIT_SECONDS = 2.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def open_storage(url: str | None, sweep_dir: Path):
    """Optuna's RDB storage at URL, or SWEEP/study.db. A URL with a missing driver is one line naming the fix."""
    import optuna

    if url is None:  # built, not formatted: a folder named with ? or # must not become a query or a fragment
        from sqlalchemy.engine import URL

        url = URL.create("sqlite", database=str((Path(sweep_dir) / "study.db").resolve())).render_as_string()
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except ImportError as exc:  # e.g. postgresql:// without psycopg
            raise UsageError(f"--storage {_safe(url)}: {exc}; pip install 'edgeship[postgres]' (psycopg 3) for "
                             f"postgresql://") from None
        except Exception as exc:  # server down, bad password; or workers starting together all creating the tables
            if attempt == 4 or "already exists" not in str(exc) and "UniqueViolation" not in str(exc):
                raise UsageError(f"--storage {_safe(url)}: cannot open ({str(exc).splitlines()[0][:200]})") from None
            time.sleep(0.5 + attempt)


def _safe(url: str) -> str:
    """URL without its password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url


class Ledger:
    """One study: its queue of candidates, the claims on them and what each finished trial recorded."""

    def __init__(self, storage, name: str, directions: Sequence[str], settings: dict, pruner=None):
        import optuna

        self.storage, self.name, self.settings = storage, name, settings
        sampler = optuna.samplers.NSGAIISampler(seed=0) if len(directions) > 1 else optuna.samplers.TPESampler(seed=0)
        try:
            self.study = optuna.create_study(storage=storage, study_name=name, directions=list(directions),
                                             sampler=sampler, pruner=pruner, load_if_exists=False)
            self.creator = True
        except optuna.exceptions.DuplicatedStudyError:
            self.study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
            self.creator = False
        self.study_id = storage.get_study_id_from_name(name)

    def queue_once(self, keys: Sequence[str]) -> None:
        """The creator queues KEYS in order and then says so; the others wait for that, then check that they
        were started with the same settings (a worker with another budget or space would corrupt the study)."""
        if self.creator:
            self.study.set_user_attr("settings", self.settings)
            for key in keys:
                self.study.enqueue_trial({CANDIDATE: key}, user_attrs={"queued_at": time.time()})
            self.study.set_user_attr("queued", list(keys))
            return
        deadline = time.time() + 300
        while "queued" not in self._study_attrs():
            if time.time() > deadline:
                raise UsageError(f"study {self.name}: its creator never queued its candidates; remove the study "
                                 f"(or SWEEP/study.db) and start again")
            time.sleep(WAIT_SECONDS)
        theirs = self._study_attrs().get("settings")
        if theirs != self.settings:
            changed = sorted(k for k in set(theirs or {}) | set(self.settings)
                             if (theirs or {}).get(k) != self.settings.get(k))
            raise UsageError(f"study {self.name} was started with other settings ({', '.join(changed)}); run "
                             f"the same command, or choose another --out / --study")

    def _study_attrs(self) -> dict:
        return self.storage.get_study_user_attrs(self.study_id)

    @property
    def queued(self) -> list[str]:
        return list(self._study_attrs().get("queued", []))

    def recover_stale(self) -> list[str]:
        """Trials left RUNNING by a dead worker: failed, and their candidate queued again (once)."""
        from optuna.trial import TrialState

        recovered = []
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start.timestamp() if trial.datetime_start else None
            if not _is_dead(trial.user_attrs.get("worker"), trial.user_attrs.get("heartbeat", started)):
                continue
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
            try:  # the note first: a finished trial takes no more attributes
                self.storage.set_trial_user_attr(trial_id, "failure", f"worker {trial.user_attrs.get('worker')} died")
                if not self.storage.set_trial_state_values(trial_id, TrialState.FAIL):
                    continue
            except Exception:  # finished meanwhile, or another worker recovered it first
                continue
            key = trial.params.get(CANDIDATE) or trial.system_attrs.get("fixed_params", {}).get(CANDIDATE)
            self.study.enqueue_trial({CANDIDATE: key}, user_attrs={"retry_of": trial.number})
            recovered.append(key)
            logger.warning(f"{self.name}: trial {trial.number} ({key}) was cut off; it runs again")
        return recovered

    def claim(self):
        """The next queued trial, now RUNNING and this worker's, or None when the queue is empty."""
        import optuna
        from optuna.trial import TrialState

        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, frozen.number)
            try:
                if not self.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                    continue  # another worker claimed it first
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            trial = optuna.Trial(self.study, trial_id)
            try:
                trial.suggest_categorical(CANDIDATE, self.queued or [frozen.system_attrs["fixed_params"][CANDIDATE]])
                trial.set_user_attr("worker", worker_id())
                self.beat(trial)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker's stale check ended it in the instant before it was marked ours
            return trial
        return None

    @staticmethod
    def beat(trial) -> None:
        trial.set_user_attr("heartbeat", time.time())

    def give_back(self, trial) -> None:
        """TRIAL did not finish here (an error, Ctrl-C): failed, and its candidate queued again."""
        from optuna.trial import TrialState

        key = trial.params.get(CANDIDATE)
        try:
            self.study.tell(trial, state=TrialState.FAIL)
            self.study.enqueue_trial({CANDIDATE: key}, user_attrs={"retry_of": trial.number})
        except Exception as exc:  # the database is what failed: the next run's stale check retries it
            logger.warning(f"{self.name}: trial {trial.number} ({key}) left running: {exc}")

    def finished(self) -> dict[str, object]:
        """Candidate key -> its finished trial (COMPLETE or PRUNED; a FAILed attempt that was retried is not one)."""
        from optuna.trial import TrialState

        done = {}
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            done[trial.params[CANDIDATE]] = trial
        return done

    def wait_for_all(self, on_wait=None) -> None:
        """Until every queued candidate has a finished trial (other workers may still be running theirs)."""
        from optuna.trial import TrialState

        while True:
            self.recover_stale()
            if set(self.queued) <= set(self.finished()):
                return
            waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if waiting:
                return  # a retried trial is queued again: the caller claims it
            if on_wait:
                on_wait()
            time.sleep(WAIT_SECONDS)


def _is_dead(worker: str | None, heartbeat: float | None) -> bool:
    """A worker of this machine is dead when its process is gone; one elsewhere when its heartbeat is old. A trial
    not yet marked with its worker is judged by HEARTBEAT, which is then when it started: a trial claimed an instant
    ago is not a dead one (two workers on one PostgreSQL study raced on exactly that)."""
    if not worker:
        return heartbeat is None or time.time() - heartbeat > STALE_SECONDS
    host, _, pid = worker.rpartition(":")
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
        return False
    return heartbeat is None or time.time() - float(heartbeat) > STALE_SECONDS


@contextlib.contextmanager
def heartbeat(trial, seconds: float = BEAT_SECONDS):
    """While the block runs, TRIAL's heartbeat is renewed every SECONDS from a thread (a long bench on a board, a
    long epoch), so other machines never take a live trial for a dead one."""
    stop = threading.Event()

    def beat():
        while not stop.wait(seconds):
            try:
                Ledger.beat(trial)
            except Exception:  # the next beat, or the stale check, settles it
                pass

    thread = threading.Thread(target=beat, name="edgeship-sweep-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
