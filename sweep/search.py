"""`run_sweep()`: the device-budgeted search that `edgeship sweep` runs, in four stages every worker runs alike.

1. measure  every architecture of the space with random weights, in every format, on every target (ledger
            study NAME/measure, two objectives: p50 and size, so Optuna's Pareto front of cost is the study's);
2. train    the candidates whose cost fits the budget, cheapest first, under successive halving (NAME/train,
            one objective: the best in-budget artifact's validation accuracy);
3. finalize the best trained candidates by validation accuracy: their exported artifacts benched with the real
            weights on every target, gated on the test split (final figures only); the pick is the most
            accurate on validation whose real bench and size are within budget;
4. record   SWEEP/sweep.json, sweep.md, pareto.png.

Choices read validation figures and target benches only, never the test split. Emulated targets' timings are
shown and never judged; a latency budget with no real target to judge it on is refused before any work.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from edgeship.runtime.errors import EdgeshipError, UsageError

from . import ledger as ledgers
from .budget import Budget
from .measure_cache import MeasureCache
from .measure import LOCAL, TFLM, BenchFiles, FormatCost, bench_files, measure_architecture, timed_targets
from .finalize import finalize
from .record import CandidateRow, SweepRecord
from .space import Architecture, Space, load_space
from .training import TrainingPlan, train_candidate

logger = logging.getLogger("edgeship")


class SweepImpossible(EdgeshipError):
    """No candidate meets the budget: the closest ones are named; sweep.json still holds every figure (and
    `.result` the SweepResult that wrote it)."""

    exit_code = 1

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


@dataclass
class SweepOptions:
    budget: Budget = field(default_factory=Budget)
    targets: Sequence[str] = (LOCAL,)
    space: str | Path = "default"
    trials: int | None = None  # at most this many candidates trained (every candidate is still measured)
    storage: str | None = None  # an Optuna RDB URL shared by workers; default SWEEP/study.db
    study: str | None = None  # the study's name in the storage; default the SWEEP folder's name
    plan: TrainingPlan = field(default_factory=TrainingPlan)
    finalists: int = 3
    threads: int = 1
    bench_runs: int = 50
    show_progress: bool = True
    bench: BenchFiles | None = None  # tests inject known timings for the untrained candidates here
    ssh: object = None  # core.ssh.SSHOptions for the targets (identity, known hosts, remote Python)
    trust_code: bool = False  # a space file's `hub:` backbones (a SavedModel graph each) may be loaded


@dataclass
class SweepResult:
    record: SweepRecord
    json_path: Path
    markdown: Path
    ran_here: dict[str, list[str]]  # stage -> candidate keys this worker ran (a multi-worker study's share)

    @property
    def pick(self) -> CandidateRow | None:
        return next((r for r in self.record.rows if r.verdict == "pick"), None)


def _targets(targets: Sequence[str]) -> list[str]:
    from edgeship.targets.ssh import SSHTarget

    chosen = list(dict.fromkeys(targets or (LOCAL,)))
    for target in chosen:
        if target not in (LOCAL, TFLM):
            SSHTarget.parse(target)  # a bad URL is one line before any work
    return chosen


def _micro_preflight(targets: list[str], budget: Budget) -> list[str]:
    """TARGETS with tflm added where the budget names its arena or flash; TFLM and Vela checked installed and the
    NPU configuration known, in one line each before any work."""
    from edgeship.bench.npu import npu_configs
    from edgeship.runtime.tflm_session import probe_tflm

    if budget.micro and TFLM not in targets:
        targets = [*targets, TFLM]
    if TFLM in targets and probe_tflm() is None:
        raise UsageError("--target tflm measures with TensorFlow Lite Micro, which is not installed here; "
                         "pip install 'edgeship[mcu]'")
    if budget.npu is not None and budget.npu not in npu_configs():
        raise UsageError(f"--npu {budget.npu}: not an Ethos-U configuration Vela knows; choose from "
                         f"{', '.join(npu_configs())}")
    return targets


def preflight(space: Space, targets: list[str], options: SweepOptions, say=logger.info) -> None:
    """What can be known before any candidate is measured, in one line each: every SSH target answers, and the
    pretrained weights of every space entry can be had (cached, or downloaded now: training would fetch them
    anyway). Offline, the default space used to measure all its candidates for a quarter of an hour and then stop
    at the first training."""
    from edgeship.targets.ssh import RemoteError, SSHOptions, SSHTarget, run_ssh
    from edgeship.train.backbones import build_backbone

    for target in targets:
        if target not in (LOCAL, TFLM):
            try:
                run_ssh(SSHTarget.parse(target), options.ssh or SSHOptions(), ["true"], timeout=60)
            except RemoteError as exc:
                raise UsageError(f"--target {target} does not answer: {exc}; nothing was measured") from None
    needed = sorted({(a.backbone, a.alpha, a.image_size, a.weights) for a in space.architectures if a.pretrained},
                    key=str)
    for count, (backbone, alpha, size, weights) in enumerate(needed, 1):
        if count == 1:
            say(f"checking the pretrained weights of {len(needed)} space entr{'y' if len(needed) == 1 else 'ies'}")
        try:
            build_backbone(backbone, size, weights, alpha=alpha)
        except EdgeshipError as exc:
            width = "" if alpha is None else f"alpha {alpha:g}, "
            raise UsageError(f"space {space.name}: {backbone} ({width}{size} px): {exc}; nothing was measured") from None


def _settings(data: Path, space: Space, options: SweepOptions, targets: list[str]) -> dict:
    """What every worker of one study must share (checked when a worker joins)."""
    return {"data": Path(data).resolve().name, "space": space.to_json(), "budget": options.budget.to_json(),
            "targets": targets, "epochs": options.plan.epochs, "seed": options.plan.seed,
            "batch_size": options.plan.batch_size, "trials": options.trials, "threads": options.threads}


def run_sweep(data: str | Path, out: str | Path, options: SweepOptions | None = None,
              report: Callable[[str], None] | None = None) -> SweepResult:
    """Search OPTIONS.space for the model that fits OPTIONS.budget on OPTIONS.targets; write OUT/sweep.*.
    Run the same call again after a kill and it resumes; run it on several machines with one `storage` (and
    OUT on a shared disk) and they share the work. Raises SweepImpossible (exit 1) when nothing fits."""
    try:
        import optuna
    except ImportError:
        raise UsageError("edgeship sweep needs Optuna: pip install 'edgeship[sweep]'") from None
    from edgeship.train.trainer import scan_dataset

    options = options or SweepOptions()
    say = report or logger.info
    started = time.time()
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise UsageError(f"{data}: no such data directory")
    space, targets = load_space(options.space, options.trust_code), _targets(options.targets)
    targets = _micro_preflight(targets, options.budget)
    if options.trials is not None and options.trials < 1:
        raise UsageError(f"--trials must be an integer >= 1, got {options.trials}")
    dataset, _ = scan_dataset(data, show_progress=False)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = ledgers.open_storage(options.storage, out)
    preflight(space, targets, options, say)
    name = options.study or out.resolve().name
    settings = _settings(data, space, options, targets)
    ran: dict[str, list[str]] = {"measure": [], "train": []}

    measured, costs, emulated, real = _measure_stage(storage, name, settings, space, dataset, out, targets, options,
                                                     say, ran)
    _, trained = _train_stage(storage, name, settings, space, costs, emulated, real or timed_targets(targets),
                              data, out, options, say, ran, TFLM in targets)

    # 3. finalize (one worker at a time; the next finds it done) and 4. record
    with _lock(out / ".finalize.lock"):
        rows = _rows(space, costs, measured, trained, options.budget, emulated)
        pick, impossible = finalize(rows, targets, emulated, options)
        record = SweepRecord(settings=settings, budget=options.budget.to_json(),
                             targets=[{"target": t, "emulated": t in emulated} for t in targets], rows=rows,
                             pick=pick, trainings=len(trained), seconds=round(time.time() - started, 1),
                             workers=sorted({t.user_attrs.get("worker", "?") for t in trained.values()}),
                             impossible=impossible)
        json_path, md = record.write(out)
    result = SweepResult(record, json_path, md, ran)
    if impossible:
        raise SweepImpossible(f"no candidate meets the budget ({options.budget.describe()}): {impossible}; "
                              f"every figure is in {md}", result)
    return result


def _measure_stage(storage, name: str, settings: dict, space: Space, dataset, out: Path, targets: list[str],
                   options: SweepOptions, say, ran: dict):
    """1. Measure every candidate (no training needed): (the finished trials, costs per key and format, the
    emulated targets, the real ones)."""
    by_key = {a.key: a for a in space.architectures}
    measure = ledgers.Ledger(storage, f"{name}/measure", ["minimize", "minimize"], settings)
    measure.queue_once([a.key for a in space.architectures])
    # injected timings (tests) are not measurements: they neither read nor fill the cache
    # nor are a microcontroller's figures kept: they are measured again with every sweep that asks for them
    micro = TFLM in targets or options.budget.npu is not None
    cache = None if options.bench is not None or micro else MeasureCache(storage, len(dataset.classes), options.threads,
                                                                options.bench_runs)
    _work(measure, "measure", say, options.show_progress, ran["measure"], lambda trial, key: _measure_trial(
        trial, by_key[key], space, len(dataset.classes), out, targets, options, cache))
    measured = measure.finished()
    costs = {key: {f: FormatCost.from_json(c) for f, c in t.user_attrs["costs"].items()}
             for key, t in measured.items()}
    emulated = _emulated_targets(costs)
    real = [t for t in timed_targets(targets) if t not in emulated]
    if options.budget.max_latency_ms is not None and not real:
        raise UsageError(f"{', '.join(timed_targets(targets)) or TFLM}: emulated (QEMU user mode), so its "
                         f"timings cannot judge "
                         f"--max-latency; add a real target (--target ssh://… or local) or drop --max-latency")
    return measured, costs, emulated, real


def _train_stage(storage, name: str, settings: dict, space: Space, costs: dict, emulated, judged: list[str],
                 data: Path, out: Path, options: SweepOptions, say, ran: dict, tflm: bool = False):
    """2. Train what fits, cheapest first (at most --trials, spread over the range of cost): (fits, trained)."""
    import optuna

    by_key = {a.key: a for a in space.architectures}
    fits = {key: [f for f, c in per.items() if not _cost_problems(options.budget, c, emulated)]
            for key, per in costs.items()}
    feasible = sorted((k for k, f in fits.items() if f), key=lambda k: _cheapest(costs[k], judged))
    if options.trials is not None and len(feasible) > options.trials:
        step = len(feasible) / options.trials  # spread over the range of cost, cheapest kept
        feasible = [feasible[int(i * step)] for i in range(options.trials)]
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    training = ledgers.Ledger(storage, f"{name}/train", ["maximize"], settings, pruner=pruner)
    if not feasible:
        return fits, {}
    training.queue_once(feasible)
    _work(training, "train", say, options.show_progress, ran["train"], lambda trial, key: _train_trial(
        trial, by_key[key], fits[key], data, out, options, tflm))
    return fits, training.finished()


def _work(book: ledgers.Ledger, stage: str, say, show_progress: bool, ran: list[str], do) -> None:
    """Claim and run this stage's trials until none is left, then wait for other workers' to finish."""
    from edgeship.runtime.progress import progress_counter

    total = len(book.queued)
    bar = progress_counter(total, desc=stage, enabled=show_progress, unit="trial")
    bar.update(len(set(book.finished()) & set(book.queued)))
    book.recover_stale()
    while True:
        trial = book.claim()
        if trial is None:
            if set(book.queued) <= set(book.finished()):
                break
            book.wait_for_all()  # until another worker's last trial ends, or a cut-off one is queued again
            continue
        key = trial.params[ledgers.CANDIDATE]
        start = time.time()
        with ledgers.heartbeat(trial):
            try:
                state, values, line = do(trial, key)
            except BaseException:  # an error or Ctrl-C: the trial fails and is queued again for the next run
                book.give_back(trial)
                raise
        trial.set_user_attr("seconds", round(time.time() - start, 2))
        book.study.tell(trial, values, state=state)
        ran.append(key)
        bar.update(1)
        done = len(set(book.finished()) & set(book.queued))
        elapsed = getattr(bar, "format_dict", {}).get("elapsed")
        mine = len(ran)  # the rate of this worker's own trials (a resumed sweep's earlier ones took no time now)
        eta = f"; ETA {elapsed / mine * (total - done):.0f} s" if elapsed and done < total else ""
        say(f"[{stage} {done}/{total}] {key}: {line}{eta}")
    bar.close()


def _measure_trial(trial, arch: Architecture, space: Space, n_classes: int, out: Path, targets, options,
                   cache: MeasureCache | None):
    from optuna.trial import TrialState

    bench = options.bench or functools.partial(bench_files, runs=options.bench_runs, ssh=options.ssh)
    costs = cache.lookup(arch.cost_key, space.formats, targets) if cache is not None else None
    if costs is None:
        costs = measure_architecture(arch, space.formats, n_classes, out / "measure", targets, options.threads,
                                     options.plan.seed, bench, options.budget.npu)
        if cache is not None:
            cache.store(arch.cost_key, costs, targets)
    else:
        trial.set_user_attr("cached", True)
    trial.set_user_attr("costs", {f: c.to_json() for f, c in costs.items()})
    trial.set_user_attr("architecture", arch.to_json())
    emulated = _emulated_targets({arch.key: costs})
    judged = [t for t in timed_targets(targets) if t not in emulated] or timed_targets(targets)
    best = min(costs.values(), key=lambda c: _latency(c, judged))
    within = [f for f, c in costs.items() if not _cost_problems(options.budget, c, emulated)]
    line = (f"{', '.join(within)} within budget" if within else "over budget, never trained: "
            + "; ".join(_cost_problems(options.budget, best, emulated)))
    line += " (measured by an earlier sweep)" if trial.user_attrs.get("cached") else ""
    return TrialState.COMPLETE, [_latency(best, judged), float(best.size_bytes or 0)], line


def _train_trial(trial, arch: Architecture, formats: list[str], data: Path, out: Path, options: SweepOptions,
                 tflm: bool = False):
    from optuna.trial import TrialState

    trial.set_user_attr("architecture", arch.to_json())
    outcome = train_candidate(trial, arch, data, out / "trials" / arch.key, formats, options.plan,
                              options.budget.max_drop_pp, also_backends=("tflm",) if tflm else ())
    trial.set_user_attr("trained", outcome.__dict__)
    if outcome.pruned_at is not None:
        return TrialState.PRUNED, None, f"pruned at epoch {outcome.pruned_at}"
    scored = [v["accuracy"] for f, v in outcome.val.items() if options.budget.drop_problem(v["drop_pp"]) is None]
    if not outcome.val:
        return TrialState.PRUNED, None, f"export failed: {', '.join(outcome.export_failed)}"
    best = max(scored or [v["accuracy"] for v in outcome.val.values()])
    return TrialState.COMPLETE, best, f"{outcome.epochs} epochs, best val accuracy {best:.2%}"


def _latency(cost: FormatCost, targets) -> float:
    """The slowest p50 over TARGETS; with no timed target, Vela's estimate where there is one (else 0)."""
    values = [cost.latency_ms.get(t) for t in targets]
    if cost.error or cost.micro_error or any(v is None for v in values):
        return float("inf")
    return max(values) if values else (cost.npu_ms or 0.0)


def _cheapest(per: dict[str, FormatCost], targets) -> float:
    return min(_latency(c, targets) for c in per.values())


def _cost_problems(budget: Budget, cost: FormatCost, emulated: set[str]) -> list[str]:
    if cost.error or cost.micro_error:  # it does not convert, or TFLM / Vela will not take it where asked to
        return [cost.error or cost.micro_error]
    return budget.cost_problems(cost.size_bytes, cost.latency_ms, {t: t in emulated for t in cost.latency_ms},
                                cost.micro())


def _emulated_targets(costs: dict[str, dict[str, FormatCost]]) -> set[str]:
    return {t for per in costs.values() for c in per.values() for t, e in c.emulated.items() if e}


def _rows(space: Space, costs, measured, trained, budget: Budget, emulated: set[str]) -> list[CandidateRow]:
    rows = []
    for arch in space.architectures:
        for fmt, cost in costs.get(arch.key, {}).items():
            row = CandidateRow(arch.key, fmt, arch.to_json(), "over-budget", size_bytes=cost.size_bytes,
                               macs=cost.macs, params=cost.params, latency_ms=dict(cost.latency_ms),
                               emulated=dict(cost.emulated), measure_trial=measured[arch.key].number,
                               **cost.micro())
            row.reasons = _cost_problems(budget, cost, emulated)
            trial = trained.get(arch.key)
            if not row.reasons and trial is not None:
                done = trial.user_attrs.get("trained", {})
                row.train_trial, row.epochs, row.run = trial.number, done.get("epochs"), done.get("run")
                row.pruned_at = done.get("pruned_at")
                reported = trial.intermediate_values
                row.last_val_accuracy = reported[max(reported)] if reported else None
                row.val = (done.get("val") or {}).get(fmt)
                if row.pruned_at is not None:
                    row.verdict, row.reasons = "pruned", [f"successive halving stopped it at epoch {row.pruned_at}"]
                elif row.val is None:
                    row.verdict, row.reasons = "failed", ["did not export"]
                else:
                    problem = budget.drop_problem(row.val["drop_pp"])
                    row.verdict, row.reasons = ("over-budget", [problem]) if problem else ("trained", [])
            elif not row.reasons:
                row.verdict, row.reasons = "not-trained", ["not among the --trials trained"]
            rows.append(row)
    return rows


@contextlib.contextmanager
def _lock(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
