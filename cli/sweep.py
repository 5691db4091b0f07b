"""`edgeship sweep DATA --out SWEEP`: the most accurate model within a device's latency, size and accuracy
budget (the library is `edgeship.sweep`; its option dataclasses hold the defaults)."""

from __future__ import annotations

from .arguments import add_ssh_flags, add_trust_flag, limited, points, positive_int, ssh_options

NAME = "sweep"
HELP = ("search backbone, width, input size and precision for the most accurate model within a device's "
        "latency, size and accuracy budget")
INTERRUPTED = "; run the same command again: finished trials are kept, the one cut off runs again"


def add_arguments(p) -> None:
    from edgeship.sweep import Budget, SweepOptions, TrainingPlan
    from edgeship.train.limits import LIMITS

    plan, options = TrainingPlan(), SweepOptions()
    p.add_argument("data", help="image folder (class sub-folders) or Food-101-style root")
    p.add_argument("--out", required=True, help="sweep folder: study.db, measure/, trials/RUN, sweep.json/md, pareto.png")
    p.add_argument("--target", action="append", help="where latency is measured and judged: local (default) or "
                                                      "ssh://[user@]host[:port]; repeat for several; tflm: a "
                                                      "microcontroller (TFLM's arena and parity decide, nothing is timed)")
    p.add_argument("--max-latency", help="p50 at batch 1 on every real target, e.g. 20ms, 800us")
    p.add_argument("--max-size", help="artifact file size, e.g. 4MB (10^6 bytes), 4MiB, 500KB")
    p.add_argument("--max-arena", help="TensorFlow Lite Micro's tensor arena, e.g. 256KB (implies --target tflm)")
    p.add_argument("--max-flash", help="the file plus TFLM's code allowance, e.g. 1MB (implies --target tflm)")
    p.add_argument("--npu", metavar="CONFIG", help="an Ethos-U configuration Vela estimates every int8 candidate for, "
                                                   "e.g. ethos-u55-128 (edgeship[mcu])")
    p.add_argument("--max-npu-ms", help="Vela's estimated time on --npu, e.g. 10ms")
    p.add_argument("--max-drop", type=points, metavar="PP", default=Budget().max_drop_pp,
                   help="accuracy an artifact may lose to its Keras model on the validation split: 1, 1pp and 1%% "
                        f"all mean 1 pp (default {Budget().max_drop_pp:g})")
    p.add_argument("--space", default=options.space, help="default (phones, Pi), tiny (small inputs, from "
                                                          "scratch) or a FILE.toml (see the sweep guide)")
    p.add_argument("--trials", type=positive_int, help="train at most N candidates (all are measured)")
    p.add_argument("--epochs", type=limited(LIMITS["epochs"]), default=plan.epochs,
                   help=f"most epochs per candidate, the last rung (default {plan.epochs})")
    p.add_argument("--batch-size", type=limited(LIMITS["batch_size"]), default=plan.batch_size)
    p.add_argument("--seed", type=limited(LIMITS["seed"]), default=plan.seed)
    p.add_argument("--finalists", type=positive_int, default=options.finalists,
                   help=f"trained candidates benched with real weights (default {options.finalists})")
    p.add_argument("--threads", type=positive_int, default=options.threads,
                   help=f"threads for every latency figure (default {options.threads})")
    p.add_argument("--bench-runs", type=positive_int, default=options.bench_runs,
                   help=f"timed runs per latency figure (default {options.bench_runs})")
    p.add_argument("--storage", help="Optuna storage URL shared by workers, e.g. postgresql://user:pw@db/sweeps "
                                     "(default: SWEEP/study.db)")
    p.add_argument("--study", help="study name in the storage (default: the --out folder's name)")
    add_ssh_flags(p)
    add_trust_flag(p)


def run(args) -> int:
    from edgeship.sweep import Budget, SweepOptions, TrainingPlan, parse_latency, parse_size, run_sweep

    budget = Budget(parse_latency(args.max_latency) if args.max_latency else None,
                    parse_size(args.max_size) if args.max_size else None, args.max_drop,
                    max_arena_bytes=parse_size(args.max_arena, "--max-arena") if args.max_arena else None,
                    max_flash_bytes=parse_size(args.max_flash, "--max-flash") if args.max_flash else None,
                    npu=args.npu,
                    max_npu_ms=parse_latency(args.max_npu_ms, "--max-npu-ms") if args.max_npu_ms else None)
    options = SweepOptions(budget=budget, targets=args.target or ("local",), space=args.space, trials=args.trials,
                           storage=args.storage, study=args.study, finalists=args.finalists, threads=args.threads,
                           ssh=ssh_options(args), bench_runs=args.bench_runs, trust_code=args.trust_code,
                           plan=TrainingPlan(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed))
    result = run_sweep(args.data, args.out, options, report=lambda line: print(line, flush=True))
    pick = result.pick
    test = (pick.test or {}).get("accuracy")
    print(f"pick: {pick.key} {pick.format}: val {pick.val_accuracy:.2%}, test "
          f"{'—' if test is None else format(test, '.2%')} (final figure, not used to choose), p50 "
          + ", ".join(f"{t} {ms:.3g} ms" for t, ms in (pick.bench_ms or {}).items())
          + (f", TFLM arena {pick.arena_bytes} bytes" if pick.arena_bytes else "")
          + (f", {args.npu} est. {pick.npu_ms:.3g} ms" if pick.npu_ms else "")
          + f", {pick.size_bytes} bytes; run: {pick.run}")
    print(f"sweep: {result.markdown}")
    return 0
