"""`edgeship gate RUN`: exit 1 when an artifact loses too much against Keras. Every threshold flag is generated
from the gate's check registry (export/gate_checks.py): flag, unit, help and default come from there."""

from __future__ import annotations

import sys
from pathlib import Path

from edgeship.runtime.errors import UsageError

from .arguments import (BUDGET_TYPES, add_model_hint_flags, add_ssh_flags, add_trust_flag, model_hints, number,
                        print_skipped, ssh_options)

NAME = "gate"
HELP = "exit 1 when an artifact loses too much accuracy against Keras"
INTERRUPTED = "; nothing was gated"
_TYPES = {**BUDGET_TYPES, "factor": number(float, 0.0, low_open=True, what="a factor such as 1.5"), "name": str}
_METAVARS = {"pp": "PP", "share": "FRAC", "fraction": "P", "factor": "X", "bytes": "SIZE", "name": "NAME"}


def add_arguments(p) -> None:
    from edgeship.export.gate_checks import GATE_CHECKS

    p.add_argument("report", nargs="?", help="report.json or its run directory")
    p.add_argument("--reference", help="with --candidate and --data: compare two models (.tflite/.onnx/.keras/bundle)")
    p.add_argument("--candidate", help="the model that must match the reference")
    p.add_argument("--data", help="folder with one sub-folder of images per class")
    for check in GATE_CHECKS.values():
        shown = "" if check.default in (None, False) else f" (default {check.default:g})"
        if check.unit == "switch":
            p.add_argument(check.flag, dest=check.name, action="store_const", const=True, default=None,
                           help=check.help)
        else:
            p.add_argument(check.flag, dest=check.name, type=_TYPES[check.unit], metavar=_METAVARS[check.unit],
                           help=check.help + shown)
    p.add_argument("--config", default=None,
                   help="read defaults from [tool.edgeship.gate] of this file (default ./pyproject.toml if present; "
                        "a --config that cannot be read is an error)")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML: one test case per artifact")
    p.add_argument("--remeasure", action="store_true",
                   help="run Keras and every artifact on the test split again and fail when a recorded figure "
                        "differs: for a run made elsewhere (hashes bind figures to files, not to the truth)")
    p.add_argument("--target", action="append", metavar="ssh://user@host[:port]",
                   help="also run every artifact on this device and gate its figures (repeatable)")
    add_ssh_flags(p)
    add_model_hint_flags(p)
    add_trust_flag(p)


def _check_modes(args) -> None:
    pair = (args.reference, args.candidate, args.data)
    if any(pair) and not all(pair):
        raise UsageError("--reference, --candidate and --data go together")
    if all(pair) == bool(args.report):
        raise UsageError("give either a REPORT (or run directory), or --reference A --candidate B --data DIR")
    if args.target and not args.report:
        raise UsageError("--target gates a run on a device: give the RUN directory (not --reference/--candidate)")
    if args.remeasure and not args.report:
        raise UsageError("--remeasure gates a run: give the RUN directory (not --reference/--candidate)")


def run(args) -> int:
    from edgeship.export.gate import evaluate_gate, reference_line, resolve_thresholds, write_junit
    from edgeship.export.gate_checks import GATE_CHECKS

    _check_modes(args)
    thresholds = resolve_thresholds(args.config, **{name: getattr(args, name) for name in GATE_CHECKS})
    if args.report:
        from edgeship.core.integrity import load_verified_report

        report, _ = load_verified_report(args.report)
        if args.remeasure and not _remeasured(args):
            return 1
    else:
        report = _compared(args)
    print(reference_line(report))
    print(thresholds.describe())
    verdicts = evaluate_gate(report, thresholds)
    if args.target:
        verdicts += _target_verdicts(args, thresholds, report)
    if args.junit:
        write_junit(verdicts, args.junit, report=report)
    for verdict in verdicts:
        print(verdict.line())
    failed = [v.artifact for v in verdicts if not v.passed]
    print(f"gate {'FAILED: ' + ', '.join(failed) if failed else 'passed'} ({len(verdicts) - len(failed)}/{len(verdicts)} artifacts pass)")
    return 1 if failed else 0


def _compared(args):
    """`--reference A --candidate B --data DIR`: the two models measured here, one line of figures."""
    from edgeship.export.compare import compare_models

    report = compare_models(args.reference, args.candidate, args.data, hints=model_hints(args),
                            trust_code=args.trust_code)
    row, ref = report.artifacts[0], report.reference
    print_skipped(report.dataset, None)
    print(f"{row.name} vs {Path(args.reference).name} on {ref.n_test} images: accuracy "
          f"{row.accuracy:.2%} vs {ref.accuracy:.2%} (Δ {row.accuracy_delta_pp:+.2f} pp, "
          f"95 % CI [{row.accuracy_delta_ci95_pp[0]:+.2f}, {row.accuracy_delta_ci95_pp[1]:+.2f}]), "
          f"agreement {row.agreement:.2%}, McNemar p {row.mcnemar_p:.3g}")
    return report


def _target_verdicts(args, thresholds, report) -> list:
    from edgeship.export.target_gate import evaluate_on_targets, target_verdicts

    results = evaluate_on_targets(args.report, args.target, ssh_options(args))
    for failed in (r for r in results if not r.ok):
        print(f"edgeship: target {failed.target} failed: {failed.error}", file=sys.stderr)
    return target_verdicts(results, thresholds, report.reference)


def _remeasured(args) -> bool:
    """`gate RUN --remeasure`: the report's figures measured again here; prints what differs."""
    from edgeship.export.remeasure import remeasure_run

    result = remeasure_run(args.report, trust_code=args.trust_code, show_progress=True)
    if result.ok:
        print(f"remeasured Keras and {len(result.artifacts)} artifact(s) on {result.n_images} test images: the "
              f"report's figures hold")
        return True
    for line in result.differences:
        print(f"REMEASURED {line}", file=sys.stderr)
    print(f"gate FAILED: the report's figures are not what its files do ({len(result.differences)} difference(s); "
          f"re-export the run here and gate that)")
    return False
