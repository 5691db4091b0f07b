"""`edgeship bench MODELS`: latency, throughput and memory per artifact, here and on SSH targets."""

from __future__ import annotations

import sys

from edgeship.runtime.errors import UsageError

from .arguments import add_ssh_flags, add_trust_flag, int_list, non_negative_float, non_negative_int, positive_int, ssh_options

NAME = "bench"
HELP = "latency, throughput and memory per artifact, here and on SSH targets"


def add_arguments(p) -> None:
    from edgeship.bench.matrix import backend_choices

    p.add_argument("models", nargs="+", help="run directories, bundle directories or model files")
    p.add_argument("--runs", type=positive_int, default=100, help="timed runs per row (default 100)")
    p.add_argument("--warmup", type=non_negative_int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--min-seconds", type=non_negative_float, default=0.0, help="keep timing until this many seconds passed too")
    p.add_argument("--threads", type=int_list, help="comma-separated thread counts, e.g. 1,2,4 (default: backend's)")
    p.add_argument("--batch", type=int_list, help="comma-separated batch sizes (default 1)")
    p.add_argument("--backend", default="all", help=f"all, {', '.join(backend_choices())}; several with commas: "
                                                    "tflite,onnxruntime-cpu")
    p.add_argument("--target", action="append", metavar="ssh://user@host[:port]", help="also bench there (repeatable)")
    p.add_argument("--no-local", action="store_true", help="bench only on the --target machines")
    p.add_argument("--npu", action="append", metavar="CONFIG",
                   help="also compile each int8 .tflite with Arm's Vela for this Ethos-U configuration (ethos-u55-128, "
                        "ethos-u65-256, ...; repeatable): operators on the NPU or CPU and why, cycles, SRAM, flash and "
                        "estimated time, into the run's report (edgeship[mcu])")
    p.add_argument("--profile", action="store_true", help="also the time per node and per op type of each TFLite "
                                                          "and ONNX artifact here (bench.md: top ops, a plot per op type)")
    add_ssh_flags(p)
    p.add_argument("--compare", metavar="BASELINE.json", help="bench.json of an earlier run: exit 1 on a slowdown")
    p.add_argument("--max-slowdown", default="10%", help="allowed slowdown against --compare (default 10%%)")
    p.add_argument("--out", help="write bench.json/.csv/.md/.png here (default: the run directory, if one)")
    p.add_argument("--json", help="also write the full result to this JSON file")
    add_trust_flag(p)


def run(args) -> int:
    from edgeship.bench import results
    from edgeship.bench.runner import BenchSettings, run_bench
    from edgeship.core.report import text_table

    if args.npu:  # Vela installed and every configuration known, before anything is timed
        from edgeship.bench.npu import npu_configs

        unknown = [c for c in args.npu if c not in npu_configs()]
        if unknown:
            raise UsageError(f"--npu {unknown[0]}: not an Ethos-U configuration Vela knows; choose from "
                             f"{', '.join(npu_configs())}")
    settings = BenchSettings(runs=args.runs, warmup=args.warmup, min_seconds=args.min_seconds,
                             threads=args.threads or (None,), batches=args.batch or (1,), backend=args.backend,
                             trust_code=args.trust_code, profile=args.profile)
    outcome = run_bench(args.models, settings, targets=args.target or (), ssh=ssh_options(args), compare=args.compare,
                        max_slowdown=results.parse_slowdown(args.max_slowdown), out_dir=args.out,
                        local=not args.no_local)
    shown, unavailable = results.split_unavailable(outcome.rows)
    print(text_table(results.TABLE_HEADERS, results.table_rows(shown)))
    if unavailable:
        print(unavailable)
    if outcome.markdown:
        print(f"bench: {outcome.markdown}")
    if outcome.write_error:
        print(f"edgeship: error: {outcome.write_error}", file=sys.stderr)
        return 2
    if args.json:
        from edgeship.runtime.fileio import atomic_write_json

        atomic_write_json(args.json, outcome.result)
    if args.npu:
        _print_npu(args.models, args.npu)
    return _exit_code(outcome)


def _print_npu(models, configs) -> None:
    """Vela's estimates for each int8 .tflite of each run: one line per (artifact, configuration), then one line
    per operator left on the CPU with Vela's reason."""
    from pathlib import Path

    from edgeship.bench.npu import compile_for_npu, map_run

    for model in models:
        path = Path(model)
        found = ([(path.name, compile_for_npu(path, c)) for c in configs] if path.is_file() else map_run(path, configs))
        for name, m in found:
            if m.error:
                print(f"NPU {m.config} {name}: {m.error}")
                continue
            share = "?" if m.npu_mac_share is None else f"{m.npu_mac_share:.0%}"
            print(f"NPU {m.config} {name}: {m.npu_ops}/{m.npu_ops + m.cpu_ops} operators on the NPU ({share} of the "
                  f"MACs), {m.cycles:,} cycles = {m.estimated_ms:.3f} ms at {m.clock_hz / 1e6:g} MHz (estimated, "
                  f"{m.system_config}, {m.memory_mode}), SRAM {m.sram_bytes / 1024:.1f} KiB, flash "
                  f"{m.flash_bytes / 1024:.1f} KiB, DRAM {m.dram_bytes / 1024:.1f} KiB"
                  + (f"; optimized: {Path(model, m.file)}" if m.file else ""))
            for op in m.cpu_operators:
                print(f"  CPU {op.op} {op.name or ''}: {op.reason or 'no reason given'}")


def _exit_code(outcome) -> int:
    """2: nothing trustworthy to judge; 1: a regression or a failed row; 130: interrupted; else 0."""
    if outcome.misbehaved:  # a board that answered outside the protocol: nothing of it was kept
        more = len(outcome.misbehaved) - 1
        print(f"edgeship: error: {outcome.misbehaved[0]}" + (f" (and {more} more target(s))" if more else ""),
              file=sys.stderr)
        return 2
    if outcome.nothing_compared:  # a speed gate that compared nothing must not pass
        print(f"edgeship: error: {outcome.nothing_compared}", file=sys.stderr)
        return 2
    for row in outcome.regressions:
        print(f"REGRESSION {row.target} {row.id}: {row.baseline_ratio:.2f}x the baseline's median", file=sys.stderr)
    for failure in outcome.failed:
        print(f"failed: {failure}", file=sys.stderr)
    if outcome.interrupted:
        print("edgeship: interrupted; the rows measured so far were written", file=sys.stderr)
        return 130
    return 1 if outcome.regressions or outcome.failed else 0
