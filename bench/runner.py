"""`run_bench()`: the matrix for every model, here and on SSH targets in parallel, then accuracy beside
speed, the Pareto front, the baseline comparison, and bench.{json,csv,md,png}."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from edgeship.core.layout import RunLayout, run_lock
from edgeship.core.records import BenchRow, LatencySettings, LatencyStage, ParityReport, TimingStage
from edgeship.core.report import load_report
from edgeship.core.report_store import update_report
from edgeship.core.speedup import attach_speedups
from edgeship.runtime.environment import fingerprint
from edgeship.runtime.errors import EdgeshipError, UsageError
from edgeship.runtime.fileio import sha256_file
from edgeship.runtime.progress import progress_counter
from edgeship.runtime.spec import MANIFEST_NAME

from . import results
from .agent import run_cases
from .matrix import artifacts_of, build_cases
from .remote import SSHOptions, SSHTarget, TargetMisbehaved, bench_on_target

logger = logging.getLogger("edgeship")


@dataclass
class BenchSettings:
    runs: int = 100
    warmup: int = 10
    min_seconds: float = 0.0
    threads: Sequence[int | None] = (None,)
    batches: Sequence[int] = (1,)
    backend: str = "all"
    show_progress: bool = True
    trust_code: bool = False  # a .keras artifact may load outside Keras' safe mode (the user's word, never a bundle's)
    profile: bool = False  # also the time per node and per op type of each TFLite/ONNX artifact (bench/profiling.py)


@dataclass
class BenchOutcome:
    result: dict  # as written to bench.json
    rows: list[BenchRow]
    markdown: Path | None = None
    regressions: list[BenchRow] = field(default_factory=list)
    interrupted: bool = False
    write_error: str | None = None  # the outputs could not be written (the result is still here)
    nothing_compared: str | None = None  # --compare matched no row of the baseline: why (a gate that compared nothing)
    misbehaved: list[str] = field(default_factory=list)  # targets that answered outside the protocol (exit 2)

    @property
    def failed(self) -> list[str]:
        return [f"{t['target']}: {t['error']}" for t in self.result["targets"] if t["status"] != "ok"] + [
            f"{r.target} {r.id}: {r.error}" for r in self.rows if r.status == "failed"]


@dataclass
class _Model:
    label: str
    bundle_dir: Path | None
    file: Path | None
    report: ParityReport | None  # only when it still describes the files
    report_path: Path | None


def _resolve(target: str | Path) -> _Model:
    path = Path(target)
    if not path.exists():  # what export and gate say for the same typo
        raise UsageError(f"{target}: no such {'model file' if path.suffix in ('.tflite', '.onnx') else 'run directory'}")
    if path.is_file() and path.name != "report.json":
        return _Model(path.name, None, path, None, None)
    try:
        layout = RunLayout.find(path)
    except UsageError:
        if path.is_dir() and (path / MANIFEST_NAME).is_file():
            return _Model(path.name, path, None, None, None)
        raise UsageError(f"{target}: not a model file, bundle directory or run directory") from None
    report, report_path = (load_report(layout.report_json) if layout.report_json.is_file() else (None, None))
    if report is not None:
        from edgeship.core.integrity import report_problems

        problems = report_problems(report, layout)
        if problems:  # its accuracy figures describe other files: show none rather than wrong ones
            logger.warning(f"{report_path}: stale ({problems[0]}); accuracy is left out and the report is not "
                           f"updated; re-run `edgeship export {layout.root}`")
            return _Model(layout.root.name, layout.bundle, None, None, report_path)
    return _Model(layout.root.name, layout.bundle, None, report, report_path)


def _cases_for(models: list[_Model], artifacts: dict[str, list], settings: BenchSettings, remote: bool) -> list[dict]:
    cases = []
    for model in models:
        for case in build_cases(artifacts[model.label], settings.threads, settings.batches, settings.backend, settings.warmup,
                                settings.runs, settings.min_seconds, remote=remote, trust_code=settings.trust_code):
            case["model"] = model.label
            case["id"] = f"{model.label}/{case['id']}" if len(models) > 1 else case["id"]
            cases.append(case)
    return cases


def _update_reports(models: list[_Model], rows: list[BenchRow], settings: BenchSettings, out_dir: Path | None) -> None:
    """Merge batch-1 latency into a run's report.json, only when this bench is *of that run, into that run* (its
    output folder is the run), measured locally, and the report still describes the files. Each figure carries
    the settings, target, time and artifact sha256 that produced it."""
    measured_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    environment = fingerprint()
    for model in models:
        if model.report is None or model.report_path is None or out_dir is None:
            continue
        if Path(out_dir).resolve() != model.report_path.parent.resolve():
            continue
        chosen = {r.name: r for r in rows if r.target == "local" and r.model == model.label and r.batch == 1
                  and r.threads == settings.threads[0] and r.ok and r.provider in (None, "cpu")}
        if not chosen:
            continue

        def merge(report, chosen=chosen) -> None:
            for artifact in report.artifacts:
                row = chosen.get(artifact.name)
                if row is None:
                    continue
                artifact.merge(row.part(LatencyStage))  # the same stage record a bench row holds
                artifact.merge(TimingStage(latency_settings=LatencySettings.measured(
                    "bench", row.runs or settings.runs, settings.warmup, settings.threads[0], artifact.sha256,
                    min_seconds=settings.min_seconds, cpu=environment.get("cpu"), measured_at=measured_at)))
            attach_speedups(report.artifacts)  # over float32, now from this bench's latencies
            report.extra.pop("bench", None)  # one global settings block could not describe mixed measurements

        update_report(RunLayout(model.report_path.parent), "bench", merge, report=model.report)


def _attach_remote_profiles(models: list[_Model], rows: list[BenchRow], label: str, answers: list[dict]) -> None:
    """A target's `--profile` answers on its batch-1 CPU rows of the same artifact and thread count."""
    from .profiling import from_agent

    for answer in answers:
        if answer.get("status") != "ok":
            logger.warning(f"{answer.get('name')}: could not be profiled on {label} ({answer.get('error')})")
            continue
        model = next((m for m in models if m.label == answer.get("model")), None)
        row = _profiled_row(rows, label, answer.get("model"), answer["name"], answer.get("threads"))
        if model is not None and row is not None:
            row.profile = from_agent(answer["profile"], _float_layers(model, answer["name"]),
                                     sha256_file(row.path) if row.path and Path(row.path).is_file() else None)


def _attach_profiles(models: list[_Model], artifacts: dict[str, list], rows: list[BenchRow],
                     settings: BenchSettings) -> None:
    """`--profile`: each local TFLite/ONNX artifact once, at the first thread count, after every timed row (so
    profiling never runs beside a timing); the profile goes on the artifact's batch-1 CPU row."""
    from .profiling import PROFILED_FORMATS, profile_artifact

    threads = settings.threads[0]
    for model in models:
        for artifact in artifacts[model.label]:
            row = _profiled_row(rows, "local", model.label, artifact.name, threads)
            if row is None or artifact.format not in PROFILED_FORMATS:
                continue
            logger.info(f"profiling {artifact.name} ({artifact.format}, {threads or 'default'} thread(s))")
            try:
                row.profile = profile_artifact(artifact, threads, float_layers=_float_layers(model, artifact.name))
            except Exception as exc:  # a profiler that fails must not lose the bench's figures
                logger.warning(f"{artifact.name}: could not be profiled ({type(exc).__name__}: "
                               f"{(str(exc).splitlines() or [''])[0][:200]})")


def _profiled_row(rows: list[BenchRow], target: str, model_label: str, name: str, threads) -> BenchRow | None:
    """The row a profile belongs on: the artifact's own runtime on the CPU, batch 1, the profiled threads."""
    return next((r for r in rows if r.target == target and r.model == model_label and r.name == name and r.ok
                 and r.batch == 1 and r.threads == threads and r.provider in (None, "cpu")
                 and r.backend in ("tflite", "onnxruntime")), None)


def _float_layers(model: _Model, name: str) -> list[str]:
    """The nodes `export --max-drop` left in float in artifact NAME, from the run's report."""
    row = next((a for a in (model.report.artifacts if model.report else []) if a.name == name), None)
    return row.quantization.float_layers if row is not None and row.quantization else []


def run_bench(models: Sequence[str | Path], settings: BenchSettings | None = None,
              targets: Sequence[str] = (), ssh: SSHOptions | None = None, compare: str | Path | None = None,
              max_slowdown: float = 0.10, out_dir: str | Path | None = None, local: bool = True) -> BenchOutcome:
    """Bench every model here and on TARGETS. Outputs go to OUT_DIR (default: the one run's directory); a
    bench whose output is a run holds that run's lock, and reads its report only once it holds it, so no
    export or on-target gate changes the files or the report under it."""
    settings, ssh = settings or BenchSettings(), ssh or SSHOptions()
    runs = [_run_with_report(m) for m in models]
    if out_dir is None and len(runs) == 1 and runs[0] is not None:
        out_dir = runs[0]
    owner = next((r for r in runs if r is not None and out_dir is not None
                  and Path(out_dir).resolve() == r.resolve()), None)
    with run_lock(owner, "bench") if owner else nullcontext():
        resolved = [_resolve(m) for m in models]
        return _bench(resolved, settings, targets, ssh, compare, max_slowdown, out_dir, local)


def _run_with_report(target: str | Path) -> Path | None:
    """The run directory TARGET names when that run has a report (what a bench into it updates), else None.
    Reads nothing but the layout: the report itself is read under the run lock."""
    path = Path(target)
    if path.is_file() and path.name != "report.json":
        return None
    try:
        layout = RunLayout.find(path)
    except UsageError:
        return None
    return layout.root if layout.report_json.is_file() else None


def _bench(resolved: list[_Model], settings: BenchSettings, targets, ssh, compare, max_slowdown, out_dir,
           local) -> BenchOutcome:
    parsed_targets = [SSHTarget.parse(t) for t in targets]
    baseline = results.load_baseline(compare) if compare else None
    # each model's artifacts, verified against their bundle records once for every use below
    artifacts = ({m.label: artifacts_of(m.file or m.bundle_dir, settings.trust_code) for m in resolved}
                 if local or parsed_targets else {})
    local_cases = _cases_for(resolved, artifacts, settings, remote=False) if local else []
    remote_cases = _cases_for(resolved, artifacts, settings, remote=True) if parsed_targets else []
    if settings.profile and parsed_targets:
        from .profiling import remote_profile_cases

        for model in resolved:
            remote_cases += remote_profile_cases(artifacts[model.label], model.label, settings.threads[0])
    bar = progress_counter(len(local_cases), desc="bench", enabled=settings.show_progress)
    target_records, rows, interrupted, misbehaved = [], [], False, []

    with ThreadPoolExecutor(max_workers=max(1, len(parsed_targets))) as pool:
        futures = {t.label: pool.submit(bench_on_target, t, ssh, remote_cases) for t in parsed_targets}
        if local_cases:
            local_rows, interrupted = run_cases(local_cases, on_row=lambda _row: bar.update(1))
            rows += [BenchRow.from_json({**r, "target": "local"}) for r in local_rows]
            target_records.append({"target": "local", "status": "ok", "environment": fingerprint(),
                                   "interrupted": interrupted})
        bar.close()
        for label, future in futures.items():
            interrupted |= _collect_target(label, future, resolved, rows, target_records, misbehaved)

    for model in resolved:
        results.attach_accuracy([r for r in rows if r.model == model.label], model.report)
        results.attach_static_costs([r for r in rows if r.model == model.label], artifacts.get(model.label, []))
    if settings.profile and local:
        _attach_profiles(resolved, artifacts, rows, settings)
    results.mark_pareto(rows)
    regressions = results.compare_to_baseline(rows, baseline, max_slowdown) if baseline else []
    result = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "settings": {"runs": settings.runs, "warmup": settings.warmup, "min_seconds": settings.min_seconds,
                           "threads": list(settings.threads), "batches": list(settings.batches),
                           "backend": settings.backend, "max_slowdown": max_slowdown if baseline else None,
                           "baseline": str(compare) if compare else None},
              "models": [m.label for m in resolved], "targets": target_records,
              "rows": [r.to_json() for r in rows], "interrupted": interrupted}
    outcome = BenchOutcome(result, rows, None, regressions, interrupted, misbehaved=misbehaved)
    if baseline is not None and not any(r.baseline_ratio is not None for r in rows):
        outcome.nothing_compared = results.why_nothing_compared(rows, baseline, compare)
    if out_dir is not None:
        try:
            outcome.markdown = results.write_outputs(result, out_dir, rows)
            _update_reports(resolved, rows, settings, Path(out_dir))
        except OSError as exc:  # a full or read-only disk: keep the measurements somewhere, say where
            outcome.write_error = _keep_elsewhere(result, exc)
    return outcome


def _collect_target(label: str, future, resolved: list[_Model], rows: list[BenchRow], target_records: list,
                    misbehaved: list) -> bool:
    """Add one SSH target's rows and record (or why it failed); True when the user interrupted it."""
    try:
        answer = future.result()
    except KeyboardInterrupt:  # keep what is measured; the remote agents end with their ssh sessions
        target_records.append({"target": label, "status": "failed", "error": "interrupted"})
        return True
    except EdgeshipError as exc:
        target_records.append({"target": label, "status": "failed", "error": str(exc).removeprefix(f"{label}: ")})
        if isinstance(exc, TargetMisbehaved):  # said once, as the command's error
            misbehaved.append(str(exc))
        else:
            logger.error(f"bench on {label} failed: {str(exc).removeprefix(label + ': ')}")
        return False
    emulated = answer["environment"].get("emulated") is True
    rows += [BenchRow.from_json({**r, "target": label, "emulated": emulated}) for r in answer["rows"]
             if r.get("kind") != "profile"]
    try:
        _attach_remote_profiles(resolved, rows, label, [r for r in answer["rows"] if r.get("kind") == "profile"])
    except (TypeError, ValueError, KeyError, AttributeError):
        misbehaved.append(f"{label}: sent a profile that is not the agent's")
    target_records.append({"target": label, "status": "ok", "environment": answer.get("environment"),
                           "interrupted": answer.get("interrupted", False)})
    return False


def _keep_elsewhere(result: dict, exc: OSError) -> str:
    import tempfile

    from edgeship.core.errors import disk_failure
    from edgeship.runtime.fileio import atomic_write_json

    reason = disk_failure(exc) or f"cannot write {exc.filename}: {exc.strerror or exc}"
    try:
        kept = atomic_write_json(Path(tempfile.mkdtemp(prefix="edgeship-bench-")) / "bench.json", result)
    except OSError:
        return f"{reason}; the measurements are only in the table above"
    return f"{reason}; the measurements were kept in {kept}"


@dataclass
class BenchRunResult:
    """What `bench_run` gives back: the run's report after the bench, its Markdown, and the whole outcome
    (rows, failed rows and targets, regressions, a write error). Unpacks as `report, report_md` as before."""

    report: ParityReport
    report_md: Path
    outcome: BenchOutcome

    @property
    def failed(self) -> list[str]:
        return self.outcome.failed

    @property
    def ok(self) -> bool:
        return not (self.outcome.failed or self.outcome.regressions or self.outcome.write_error
                    or self.outcome.interrupted or self.outcome.nothing_compared or self.outcome.misbehaved)

    def __iter__(self):
        return iter((self.report, self.report_md))


def bench_run(run: str | Path, runs: int = 100, warmup: int = 10, min_seconds: float = 0.0,
              threads: int | None = None, show_progress: bool = True, trust_code: bool = False) -> BenchRunResult:
    """Bench a run's artifacts at batch 1 and write the figures into its report (and bench.* beside it).
    Check `.ok` (or `.failed`, `.outcome.write_error`): a row that failed or a report that could not be
    written does not raise."""
    layout = RunLayout.find(run)
    if not layout.report_json.is_file():
        raise UsageError(f"{layout.report_json}: no report; run `edgeship export {layout.root}` first")
    outcome = run_bench([layout.root], BenchSettings(runs=runs, warmup=warmup, min_seconds=min_seconds,
                                                     threads=(threads,), show_progress=show_progress,
                                                     trust_code=trust_code))
    report, _ = load_report(layout.report_json)
    return BenchRunResult(report, layout.report_md, outcome)

