"""3. finalize: the best trained candidates by validation accuracy have their exported artifacts benched with the
real weights on every target and gated on the test split (final figures: nothing reads them to choose); the
pick is the most accurate on validation whose real bench and size are within budget, and which passes its gate."""

from __future__ import annotations

from pathlib import Path
from edgeship.runtime.errors import EdgeshipError

from .budget import Budget
from .measure import LOCAL, TFLM, target_label, timed_targets
from .record import CandidateRow


def finalize(rows: list[CandidateRow], targets, emulated: set[str], options):
    """OPTIONS: the search's SweepOptions. Bench the best trained candidates' real artifacts on every target and gate them on test, best validation
    accuracy first, until OPTIONS.finalists are benched and one is within budget: that one is the pick.
    (pick, None), or (None, why and the closest candidates)."""
    trained = sorted((r for r in rows if r.verdict == "trained"), key=lambda r: (-r.val_accuracy, _real(r, emulated)))
    benched: dict[str, dict] = {}  # run -> format -> target -> p50
    pick = None
    for count, row in enumerate(trained):
        if pick is not None and count >= options.finalists:
            break
        row.verdict = "finalist"
        if row.run not in benched:
            benched[row.run] = _bench_real(row.run, targets, options)
        _final_figures(row, benched[row.run], targets, emulated, options.budget)
        if pick is None and not row.reasons:
            row.verdict, pick = "pick", row
    if pick is not None:
        return {"key": pick.key, "format": pick.format, "run": pick.run,
                "why": "the highest validation accuracy whose real bench and size are within budget"}, None
    closest = sorted(rows, key=lambda r: _excess(r, options.budget, emulated))[:3]
    return None, "closest: " + "; ".join(f"{r.key} {r.format} ({', '.join(r.reasons) or r.verdict})" for r in closest)


def _bench_real(run: str, targets, options) -> dict:
    """Format -> target -> p50 of RUN's exported artifacts with their real weights (bench.json lands in RUN)."""
    from edgeship.bench.runner import BenchSettings, run_bench

    timed = timed_targets(targets)
    if not timed:  # a microcontroller's sweep: its figures are TFLM's, from the export
        return {}
    outcome = run_bench([run], BenchSettings(runs=options.bench_runs, threads=(options.threads,),
                                             backend="tflite,onnxruntime-cpu", show_progress=False),
                        targets=[t for t in timed if t != LOCAL], ssh=options.ssh, local=LOCAL in timed,
                        out_dir=run)
    labels = {target_label(t): t for t in targets}
    figures: dict[str, dict] = {}
    for row in outcome.rows:
        if row.ok and row.latency_ms:
            figures.setdefault(row.name, {})[labels.get(row.target, row.target)] = row.latency_ms["p50"]
    return figures


def _final_figures(row: CandidateRow, benched: dict, targets, emulated: set[str], budget: Budget) -> None:
    """The finalist's real bench, its gate and figures on the test split (final figures: nothing reads them to
    choose), and whether its real cost is within budget."""
    from edgeship.core.integrity import load_verified_report
    from edgeship.export.gate import GateThresholds, evaluate_gate

    row.bench_ms = dict(benched.get(row.format, {}))
    try:
        parity, _ = load_verified_report(Path(row.run))  # its figures must describe the files on disk
    except EdgeshipError as exc:
        row.gate = {"passed": False, "reasons": [str(exc)]}
        row.reasons = [f"its report cannot be trusted: {str(exc)[:200]}"]
        return
    artifact = next((a for a in parity.artifacts if a.name == row.format), None)
    thresholds = GateThresholds(max_drop_pp=budget.max_drop_pp, max_arena_bytes=budget.max_arena_bytes,
                                max_flash_bytes=budget.max_flash_bytes)
    verdict = next((v for v in evaluate_gate(parity, thresholds) if v.artifact == row.format), None)
    row.gate = None if verdict is None else {"passed": verdict.passed, "reasons": verdict.reasons}
    if artifact is not None:
        row.test = {"accuracy": artifact.accuracy, "accuracy_delta_pp": artifact.accuracy_delta_pp,
                    "agreement": artifact.agreement, "n_images": parity.reference.n_test}
        row.size_bytes = artifact.size_bytes or row.size_bytes
    tflm = []
    if TFLM in targets:  # the exported file's own figures replace the untrained ones
        micro = artifact.other_runtime(TFLM) if artifact is not None else None
        tflm = _tflm_parity(micro, thresholds.min_agreement)
        row.arena_bytes, row.flash_bytes = (micro.arena_bytes, micro.flash_bytes) if micro else (None, None)
    timed = timed_targets(targets)
    row.reasons = budget.cost_problems(row.size_bytes, {t: row.bench_ms.get(t) for t in timed},
                                       {t: t in emulated for t in timed},
                                       {"arena_bytes": row.arena_bytes, "flash_bytes": row.flash_bytes,
                                        "npu_ms": row.npu_ms}) + tflm
    if verdict is None or not verdict.passed:  # a pick passes its gate or is not the pick
        why = verdict.reasons[0] if verdict is not None and verdict.reasons else "no figures on the test split"
        row.reasons.append(f"gate failed on the test split: {why}")


def _tflm_parity(micro, min_agreement: float) -> list[str]:
    """Why the finalist does not answer on TensorFlow Lite Micro as on LiteRT (MICRO: its TFLM figures; empty: it
    does)."""
    if micro is None:
        return ["no TensorFlow Lite Micro parity in its report"]
    if micro.error:
        return [f"TensorFlow Lite Micro: {micro.error}"]
    if micro.agreement is None or micro.agreement < min_agreement:
        return [f"TensorFlow Lite Micro agrees with LiteRT on {micro.agreement or 0:.2%} < {min_agreement:.2%}"]
    return []


def _real(row: CandidateRow, emulated: set[str]) -> float:
    return max([ms for t, ms in row.latency_ms.items() if t not in emulated and ms is not None] or [0.0])


def _excess(row: CandidateRow, budget: Budget, emulated: set[str]) -> float:
    """How far over budget, as the worst ratio of figure to limit (1.0: on the line)."""
    ratios = [1.0]
    if budget.max_size_bytes and row.size_bytes:
        ratios.append(row.size_bytes / budget.max_size_bytes)
    if budget.max_latency_ms:
        ratios.append(_real(row, emulated) / budget.max_latency_ms)
    for limit, value in ((budget.max_arena_bytes, row.arena_bytes), (budget.max_flash_bytes, row.flash_bytes),
                         (budget.max_npu_ms, row.npu_ms)):
        if limit and value:
            ratios.append(value / limit)
    if row.val is not None and budget.max_drop_pp:
        ratios.append(max(0.0, row.val["drop_pp"]) / budget.max_drop_pp)
    return max(ratios) + (0 if row.val is not None else 0.001)
