"""The command line. Thin: it parses arguments and calls the functions Python users call.

Imports are lazy so that `edgeship predict` on a Raspberry Pi never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from edgeship.core.formats import FORMATS
from edgeship.core.limits import LIMITS, LR_SCHEDULES, STRATEGIES
from edgeship.runtime.errors import EdgeshipError, UsageError


def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _class_list(text: str) -> list[str]:
    names = _csv_list(text)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"lists {', '.join(twice)} more than once; name each class once")
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"a classifier needs at least two classes, got {text!r}")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _number(kind, low=None, high=None, low_open=False, high_open=False, what="a number"):
    """An argparse type: KIND (int/float) within [low, high] (open ends where asked), checked at parse time."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or (
                low is not None and (value < low or (low_open and value == low))) or (
                high is not None and (value > high or (high_open and value == high))):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


_fraction = _number(float, 0.0, 1.0, what="a fraction in [0, 1]")


def _limited(name: str):
    """An argparse type that holds a training option to the library's own range (core.limits.LIMITS)."""
    limit = LIMITS[name]
    return _number(limit.kind, limit.low, limit.high, limit.low_open, limit.high_open, what=limit.expected)


def _points(text: str) -> float:
    """Percentage points, as `0.5`, `0.5pp` or `0.5%` (the README writes --max-slowdown 10%): all mean 0.5 pp."""
    number = text.strip().removesuffix("pp").removesuffix("%").strip()
    return _number(float, what="a number of percentage points such as 0.5 or 0.5%")(number)


def _share(text: str) -> float:
    """A share as a fraction or a percentage: `0.9`, `90%` and `90` all mean 90 % (a number above 1 cannot
    be a fraction, so it is read as percent); the gate prints the threshold it understood."""
    raw = text.strip()
    percent = raw.endswith("%")
    try:
        value = float(raw.removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.9 or a percentage such as 90%, got {text!r}") from None
    if percent or value > 1:
        value /= 100.0
    if value != value or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1] or a percentage in [0, 100], got {text!r}")
    return value
_non_negative_float = _number(float, 0.0, what="a number >= 0")
_non_negative_int = _number(int, 0, what="an integer >= 0")


def cmd_train(args) -> int:
    from edgeship.train import (
        AugmentConfig,
        DataOptions,
        HeadConfig,
        HParams,
        ModelOptions,
        SplitConfig,
        TrainConfig,
        train,
    )

    config = TrainConfig(
        model=ModelOptions(backbone=args.backbone, image_size=args.image_size, weights=args.weights, init=args.init,
                           alpha=args.alpha, freeze_backbone=args.freeze_backbone, resize=args.resize,
                           head=HeadConfig(dropout=args.dropout, l2=args.l2, hidden_units=args.hidden)),
        hparams=HParams(epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs,
                        fine_tune_layers=args.fine_tune_layers, batch_size=args.batch_size,
                        learning_rate=args.learning_rate, fine_tune_learning_rate=args.fine_tune_learning_rate,
                        cache_features=not args.no_cache, augment=AugmentConfig.parse(args.augment),
                        class_weights=args.class_weights, patience=args.patience, lr_schedule=args.lr_schedule,
                        strategy=args.strategy),
        data=DataOptions(classes=args.classes, splits=SplitConfig(seed=args.seed, max_per_class=args.max_per_class,
                                                                  calib=args.calib_fraction, calib_max=args.calib_max),
                         unknown_recall=None if args.unknown_recall == 0 else args.unknown_recall,
                         ood_dir=args.ood_dir),
        overwrite=args.overwrite)
    if args.preview_augmentation:
        return _preview_augmentation(args, config)
    result = train(args.data, args.out, config)
    print(f"trained {config.model.backbone}: test accuracy {result.test_accuracy:.2%} after {result.epochs_run} epoch(s)")
    for note in result.stopped_early:
        print(note)
    if result.role.workers > 1:
        print(f"{result.role.describe()}: weights sha256 {result.weights_sha256}")
    if not result.role.chief:
        print(f"the chief writes the bundle to {args.out}")
        return 0
    _print_skipped(result.bundle.provenance.get("dataset", {}), result.layout.training / "report.md")
    print(f"bundle: {result.layout.bundle}")
    print(f"training report: {result.layout.training / 'report.md'}")
    return 0


def _print_skipped(dataset: dict, listed_in: Path | None) -> None:
    """One console line for the images the scan could not read (the report lists them; without a report,
    the first few are named)."""
    count = dataset.get("n_skipped") or 0
    if count:
        where = (f"the list is in {listed_in}" if listed_in is not None else
                 "; ".join(f"{s['path']}: {s['reason']}" for s in (dataset.get("skipped") or [])[:3])
                 + (" …" if count > 3 else ""))
        print(f"skipped {count} unreadable image(s) of {count + (dataset.get('n_images') or 0)}; {where}",
              file=sys.stderr)


def _preview_augmentation(args, config) -> int:
    """Write the augmentation grid for the first images of the dataset, and train nothing."""
    from edgeship.runtime.spec import InputSpec
    from edgeship.train.augment import preview_augmentation
    from edgeship.train.backbones import get_backbone
    from edgeship.train.trainer import scan_dataset

    dataset, _ = scan_dataset(args.data, config.data.classes, config.show_progress)
    size = get_backbone(config.model.backbone).input_size(config.model.image_size)
    first = {}
    for sample in dataset.samples:
        first.setdefault(sample.label, sample.path)
    path = preview_augmentation(list(first.values())[:4], InputSpec(size, size), config.hparams.augment,
                                Path(args.preview_augmentation))
    print(f"augmentation preview ({config.hparams.augment.describe()}): {path}")
    return 0


def cmd_outlier(args) -> int:
    from edgeship.train.outlier import outlier_run

    change = outlier_run(args.run, args.out, args.factor, trust_code=args.trust_code, batchnorm=args.batchnorm,
                         channel=args.channel)
    print(f"{args.out}: {change.describe()}; export it to see what int8 does with it")
    return 0


def cmd_explain(args) -> int:
    from edgeship.train.gradcam import explain_run

    for explanation, path in explain_run(args.model, args.images, args.out, args.class_name, args.trust_code):
        print(f"{explanation.image}: {explanation.class_name} ({explanation.probability:.2%}) -> {path}")
    return 0


def cmd_explore(args) -> int:
    from edgeship.core.explore_guard import check_host
    from edgeship.core.explorer import build_overlays, free_port, serve

    if not args.write_only:
        check_host(args.host, args.allow_remote)  # before any work
    exploration = build_overlays(args.run, args.artifact)
    for overlay, path in zip(exploration.overlays, exploration.files):
        print(f"{exploration.artifact.name}: overlay '{overlay.title}' on {len(overlay.values)} op(s) -> {path}")
    for note in exploration.notes:
        print(f"{exploration.artifact.name}: {note}")
    if args.write_only:
        return 0
    port = args.port or free_port(args.host)
    serve(exploration, args.host, port, open_browser=not args.no_browser, allow_remote=args.allow_remote,
          on_url=lambda url: print(f"Model Explorer: {url}\n(Ctrl+C stops it)", flush=True))
    return 0


def cmd_sweep(args) -> int:
    from edgeship.sweep import Budget, SweepOptions, TrainingPlan, parse_latency, parse_size, run_sweep

    budget = Budget(parse_latency(args.max_latency) if args.max_latency else None,
                    parse_size(args.max_size) if args.max_size else None, args.max_drop)
    options = SweepOptions(budget=budget, targets=args.target or ("local",), space=args.space, trials=args.trials,
                           storage=args.storage, study=args.study, finalists=args.finalists, threads=args.threads,
                           ssh=_ssh_options(args), bench_runs=args.bench_runs, trust_code=args.trust_code,
                           plan=TrainingPlan(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed))
    result = run_sweep(args.data, args.out, options, report=lambda line: print(line, flush=True))
    pick = result.pick
    test = (pick.test or {}).get("accuracy")
    print(f"pick: {pick.key} {pick.format}: val {pick.val_accuracy:.2%}, test "
          f"{'—' if test is None else format(test, '.2%')} (final figure, not used to choose), p50 "
          + ", ".join(f"{t} {ms:.3g} ms" for t, ms in (pick.bench_ms or {}).items())
          + f", {pick.size_bytes} bytes; run: {pick.run}")
    print(f"sweep: {result.markdown}")
    return 0


def cmd_export(args) -> int:
    from edgeship.core.report import SUMMARY_HEADERS, summary_rows, text_table
    from edgeship.export import export_run

    result = export_run(args.run, args.formats, calib_size=args.calib_size, int8_io=args.io, max_drop=args.max_drop,
                        diagnose=args.diagnose, trust_code=args.trust_code, also_openvino=args.also_openvino)
    print(text_table(SUMMARY_HEADERS, summary_rows(result.parity)))
    print(f"report: {result.report_md}")
    _print_skipped(result.parity.dataset, result.report_md)
    if result.failed:
        print(f"edgeship: {len(result.failed)} format(s) failed: {', '.join(result.failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_gate(args) -> int:
    from edgeship.core.integrity import load_verified_report
    from edgeship.export.gate import evaluate_gate, reference_line, resolve_thresholds, write_junit

    pair = (args.reference, args.candidate, args.data)
    if any(pair) and not all(pair):
        raise UsageError("--reference, --candidate and --data go together")
    if all(pair) == bool(args.report):
        raise UsageError("give either a REPORT (or run directory), or --reference A --candidate B --data DIR")
    thresholds = resolve_thresholds(args.config, max_drop_pp=args.max_drop, min_agreement=args.min_agreement,
                                    max_class_drop_pp=args.max_class_drop, max_prob_diff=args.max_prob_diff,
                                    min_accuracy=args.min_accuracy,
                                    require_gpu_delegate=True if args.require_gpu_delegate else None,
                                    min_speedup=args.min_speedup,
                                    allow_collapsed=True if args.allow_collapsed else None)
    if args.target and not args.report:
        raise UsageError("--target gates a run on a device: give the RUN directory (not --reference/--candidate)")
    if args.remeasure and not args.report:
        raise UsageError("--remeasure gates a run: give the RUN directory (not --reference/--candidate)")
    if args.report:
        report, _ = load_verified_report(args.report)
        if args.remeasure and not _remeasured(args):
            return 1
    else:
        from edgeship.export.compare import compare_models

        report = compare_models(args.reference, args.candidate, args.data, hints=_model_hints(args),
                                trust_code=args.trust_code)
        row, ref = report.artifacts[0], report.reference
        _print_skipped(report.dataset, None)
        print(f"{row.name} vs {Path(args.reference).name} on {ref.n_test} images: accuracy "
              f"{row.accuracy:.2%} vs {ref.accuracy:.2%} (Δ {row.accuracy_delta_pp:+.2f} pp, "
              f"95 % CI [{row.accuracy_delta_ci95_pp[0]:+.2f}, {row.accuracy_delta_ci95_pp[1]:+.2f}]), "
              f"agreement {row.agreement:.2%}, McNemar p {row.mcnemar_p:.3g}")
    print(reference_line(report))
    print(thresholds.describe())
    verdicts = evaluate_gate(report, thresholds)
    if args.target:
        from edgeship.export.target_gate import evaluate_on_targets, target_verdicts

        results = evaluate_on_targets(args.report, args.target, _ssh_options(args))
        for failed in (r for r in results if not r.ok):
            print(f"edgeship: target {failed.target} failed: {failed.error}", file=sys.stderr)
        verdicts += target_verdicts(results, thresholds, report.reference)
    if args.junit:
        write_junit(verdicts, args.junit, report=report)
    for verdict in verdicts:
        print(verdict.line())
    failed = [v.artifact for v in verdicts if not v.passed]
    print(f"gate {'FAILED: ' + ', '.join(failed) if failed else 'passed'} ({len(verdicts) - len(failed)}/{len(verdicts)} artifacts pass)")
    return 1 if failed else 0


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


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in _csv_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _ssh_options(args):
    from edgeship.core.ssh import SSHOptions

    return SSHOptions(accept_new_host_key=args.accept_new_host_key, known_hosts=args.known_hosts,
                      identity=args.identity, remote_python=args.remote_python)


def _add_ssh_flags(p) -> None:
    p.add_argument("--accept-new-host-key", action="store_true", help="trust a target's host key on first contact")
    p.add_argument("--known-hosts", help="known_hosts file for targets (default: ssh's own)")
    p.add_argument("--identity", help="private key for targets (default: ssh's own)")
    p.add_argument("--remote-python", help="Python on the targets that has edgeship[runtime]'s packages")


def cmd_bench(args) -> int:
    from edgeship.bench import results
    from edgeship.bench.runner import BenchSettings, run_bench
    from edgeship.core.report import text_table

    settings = BenchSettings(runs=args.runs, warmup=args.warmup, min_seconds=args.min_seconds,
                             threads=args.threads or (None,), batches=args.batch or (1,), backend=args.backend,
                             trust_code=args.trust_code, profile=args.profile)
    ssh = _ssh_options(args)
    outcome = run_bench(args.models, settings, targets=args.target or (), ssh=ssh, compare=args.compare,
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
    if outcome.misbehaved:  # a board that answered outside the protocol: nothing of it was kept
        print(f"edgeship: error: {outcome.misbehaved[0]}" + (f" (and {len(outcome.misbehaved) - 1} more target(s))"
                                                             if len(outcome.misbehaved) > 1 else ""), file=sys.stderr)
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


def cmd_predict(args) -> int:
    from edgeship.predict import run_predict

    return run_predict(args.model, args.images, top_k=args.top_k, as_json=args.json, backend=args.backend,
                       threads=args.threads, artifact=args.artifact, provider=args.provider, video=args.video,
                       every=args.every, max_frames=args.max_frames, hints=_model_hints(args))


def _add_trust_flag(p) -> None:
    p.add_argument("--trust-code", action="store_true",
                   help="load a .keras model that Keras' safe mode refuses (a Lambda layer, a TF-Hub bundle): this "
                        "runs code that came with the model, so only for models whose author you trust")


def _add_model_hint_flags(p) -> None:
    """What a model made elsewhere may not say about itself (its own metadata wins when it does)."""
    p.add_argument("--labels", metavar="FILE", help="class names, one per line in output order, for a model "
                                                    "without edgeship or standard metadata")
    p.add_argument("--input-range", metavar="0,255|0,1|-1,1",
                   help="pixel values such a model was trained on (or --mean/--std)")
    p.add_argument("--mean", metavar="M[,M,M]", help="with --std: the model takes (pixel - mean) / std")
    p.add_argument("--std", metavar="S[,S,S]", help="with --mean")
    p.add_argument("--output-scale", metavar="S[,ZERO_POINT]",
                   help="an integer (uint8/int8) output's scale when the model records none: p = (q - zero) * S")


def _model_hints(args):
    from edgeship.runtime.foreign import ModelHints

    return ModelHints.from_flags(args.labels, args.input_range, args.mean, args.std, args.output_scale)


def cmd_demo(args) -> int:
    from edgeship.demo import run_demo

    return run_demo(args.out, epochs=args.epochs, data=args.data, bench_runs=args.runs)


def cmd_formats(args) -> int:
    from edgeship.core.report import text_table

    rows = [[f.name, f.filename, f.precision, "yes" if f.needs_calibration else "no", f.backend,
             f.runs_here() or "not installed", "yes" if f.default else "when named", f.description]
            for f in FORMATS.values()]
    print(text_table(("format", "file", "precision", "calibration", "backend", "runs here with", "by default",
                      "description"), rows))
    return 0


def cmd_backbones(args) -> int:
    from edgeship.core.report import text_table
    from edgeship.train.backbones import BACKBONES

    rows = [[b.name, b.default_size, b.weights_source, b.description] for b in BACKBONES.values()]
    rows.append(["hub:HANDLE_OR_DIR", 224, "the TF-Hub model's own",
                 "TF-Hub feature vector (URL handle with edgeship[hub], or a local SavedModel directory)"])
    print(text_table(("backbone", "default size", "pretrained weights", "description"), rows))
    return 0




class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line naming the command, with "did you mean" for a mistyped option or
    command, instead of twenty lines of usage (`--help` still prints the whole usage)."""

    def error(self, message: str):
        hint = self._did_you_mean(message)
        self.exit(2, f"{self.prog}: error: {message}{hint} (see `{self.prog} --help`)\n")

    def _did_you_mean(self, message: str) -> str:
        import difflib

        if message.startswith("unrecognized arguments:"):
            options = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            guesses = []
            for word in message.split(":", 1)[1].split():
                if word.startswith("--"):
                    close = difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.6)
                    guesses += close
            return f"; did you mean {', '.join(guesses)}?" if guesses else ""
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            known = [c.strip(" '") for c in choice.group(2).split(",")]
            close = difflib.get_close_matches(choice.group(1), known, n=1, cutoff=0.6)
            return f"; did you mean {close[0]}?" if close else ""
        return ""


def _version() -> str:
    import importlib.metadata

    try:
        return f"edgeship {importlib.metadata.version('edgeship')}"
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing
        return "edgeship (not installed)"


def _resize_methods() -> list[str]:
    from edgeship.runtime.preprocess import RESIZERS  # numpy and PIL only

    return list(RESIZERS)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="edgeship", description="Ship image classifiers to edge devices.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a classifier on class folders or Food-101-style list files")
    p.add_argument("data", help="folder with one sub-folder of images per class, or a Food-101-style root (meta/*.txt)")
    p.add_argument("--out", required=True, help="run directory to write (bundle/, training/)")
    p.add_argument("--backbone", default="small_cnn", help="see `edgeship backbones` (default small_cnn)")
    p.add_argument("--image-size", type=_limited("image_size"), help="square input size in px (default: the backbone's)")
    p.add_argument("--epochs", type=_limited("epochs"), default=10)
    p.add_argument("--batch-size", type=_limited("batch_size"), default=32)
    p.add_argument("--learning-rate", type=_limited("learning_rate"), default=1e-3)
    p.add_argument("--weights", default="none", help="none, imagenet (needs internet) or a local weights file")
    p.add_argument("--alpha", type=_limited("alpha"), help="width multiplier for MobileNet backbones")
    p.add_argument("--resize", default="bilinear", choices=_resize_methods(),
                   help="how images are resized to the input size everywhere (training, parity, the device): "
                        "bilinear (default) is what phone apps compute (MediaPipe, Android bitmaps, "
                        "tf.image.resize: no antialiasing); bilinear-antialias is PIL's")
    p.add_argument("--classes", type=_class_list, help="comma-separated class folders to use, in label order")
    p.add_argument("--patience", type=_limited("patience"), default=5, help="early-stopping patience in epochs")
    p.add_argument("--seed", type=_limited("seed"), default=0, help="seed for splits, augmentation and weight init")
    p.add_argument("--init", help="a .keras model to continue training from")
    p.add_argument("--fine-tune-epochs", type=_limited("fine_tune_epochs"), default=0,
                   help="phase 2: epochs with the top backbone layers unfrozen (frozen-backbone runs)")
    p.add_argument("--fine-tune-layers", type=_limited("fine_tune_layers"), default=20, help="backbone layers phase 2 unfreezes (default 20)")
    p.add_argument("--fine-tune-learning-rate", type=_limited("fine_tune_learning_rate"), default=1e-5)
    freeze = p.add_mutually_exclusive_group()
    freeze.add_argument("--freeze-backbone", dest="freeze_backbone", action="store_true", default=None,
                        help="phase 1 trains the head only (default when the backbone is pretrained)")
    freeze.add_argument("--train-backbone", dest="freeze_backbone", action="store_false",
                        help="train the whole model from the start")
    p.add_argument("--no-cache", action="store_true",
                   help="phase 1 runs the frozen backbone every epoch instead of on cached features")
    p.add_argument("--dropout", type=_limited("dropout"), default=0.2, help="head dropout (default 0.2)")
    p.add_argument("--l2", type=_limited("l2"), default=0.0, help="head L2 weight decay")
    p.add_argument("--hidden", type=_limited("hidden_units"), default=0, help="units of a hidden Dense layer in the head (default none)")
    p.add_argument("--augment", default="none",
                   help="training-split augmentation: none; standard (includes left-right flips: wrong for text, "
                        "digits and many product photos); standard-no-flip; or e.g. rotation=0.1,zoom=0.2,contrast=0.1")
    p.add_argument("--preview-augmentation", metavar="PNG", help="write an augmentation preview grid and exit")
    p.add_argument("--max-per-class", type=_positive_int, help="use at most N images per class (seeded subset)")
    p.add_argument("--calib-fraction", type=_number(float, 0.0, 1.0, high_open=True, what="a fraction in [0, 1)"),
                   default=0.1, help="share of the training pool kept apart for int8 calibration (default 0.1)")
    p.add_argument("--calib-max", type=_positive_int, default=300,
                   help="at most this many calibration images in all (default 300)")
    p.add_argument("--class-weights", action="store_true", help="weight the loss by inverse class frequency")
    p.add_argument("--lr-schedule", default="plateau", choices=LR_SCHEDULES)
    p.add_argument("--unknown-recall", type=_fraction, default=0.95,
                   help="calibrate an 'unknown' threshold keeping this validation recall (0: no threshold)")
    p.add_argument("--ood-dir", help="images of no known class: the report gives the share rejected as unknown")
    p.add_argument("--strategy", choices=STRATEGIES, help="tf.distribute strategy")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("explain", help="Grad-CAM heat maps: which part of each image decided the class")
    p.add_argument("model", help="run directory, bundle directory or .keras file (with edgeship.json beside it)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--class", dest="class_name", help="explain this class instead of the predicted one")
    p.add_argument("--out", help="folder for the PNGs (default RUN/explain)")
    _add_trust_flag(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("explore", help="open a TFLite artifact in Model Explorer (ai-edge-model-explorer) with "
                                       "edgeship's per-op overlays: latency, int8 error, layers left in float")
    p.add_argument("run", help="run directory (or its bundle)")
    p.add_argument("--artifact", help="artifact name (default tflite_int8, else the first .tflite)")
    p.add_argument("--host", default="localhost", help="address to serve on (default localhost; another needs "
                                                       "--allow-remote)")
    p.add_argument("--allow-remote", action="store_true", help="serve on a non-loopback --host (others on the "
                                                               "network can then reach it; the token still applies)")
    p.add_argument("--port", type=int, help="port (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser (CI, SSH)")
    p.add_argument("--write-only", action="store_true", help="write the overlay files and stop (no server)")
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("sweep", help="search backbone, width, input size and precision for the most accurate "
                                     "model within a device's latency, size and accuracy budget")
    p.add_argument("data", help="image folder (class sub-folders) or Food-101-style root")
    p.add_argument("--out", required=True, help="sweep folder: study.db, measure/, trials/RUN, sweep.json/md, pareto.png")
    p.add_argument("--target", action="append", help="where latency is measured and judged: local (default) or "
                                                      "ssh://[user@]host[:port]; repeat for several")
    p.add_argument("--max-latency", help="p50 at batch 1 on every real target, e.g. 20ms, 800us")
    p.add_argument("--max-size", help="artifact file size, e.g. 4MB (10^6 bytes), 4MiB, 500KB")
    p.add_argument("--max-drop", type=float, default=1.0,
                   help="accuracy an artifact may lose to its Keras model on the validation split, pp (default 1)")
    p.add_argument("--space", default="default", help="default (phones, Pi), tiny (small inputs, from scratch) or "
                                                      "a FILE.toml (see README)")
    p.add_argument("--trials", type=_positive_int, help="train at most N candidates (all are measured)")
    p.add_argument("--epochs", type=_limited("epochs"), default=9, help="most epochs per candidate (the last rung)")
    p.add_argument("--batch-size", type=_limited("batch_size"), default=32)
    p.add_argument("--seed", type=_limited("seed"), default=0)
    p.add_argument("--finalists", type=_positive_int, default=3, help="trained candidates benched with real weights")
    p.add_argument("--threads", type=_positive_int, default=1, help="threads for every latency figure (default 1)")
    p.add_argument("--bench-runs", type=_positive_int, default=50, help="timed runs per latency figure (default 50)")
    p.add_argument("--storage", help="Optuna storage URL shared by workers, e.g. postgresql://user:pw@db/sweeps "
                                     "(default: SWEEP/study.db)")
    p.add_argument("--study", help="study name in the storage (default: the --out folder's name)")
    _add_ssh_flags(p)
    _add_trust_flag(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("outlier", help="copy a run with one activation channel scaled up (float model unchanged): "
                                       "a model that plain int8 really hurts, to try the gate and --max-drop on")
    p.add_argument("run", help="run directory (small_cnn or any model where a BatchNorm feeds a Conv2D/Dense via ReLU)")
    p.add_argument("--out", required=True, help="new run directory")
    p.add_argument("--factor", type=_number(float, what="a positive factor"), default=100.0,
                   help="how much wider the channel's range gets (default 100: about -7 pp on the demo; 300: chance)")
    p.add_argument("--batchnorm", help="which BatchNormalization layer (default: the first that qualifies)")
    p.add_argument("--channel", type=_non_negative_int, default=0, help="which of its channels (default 0)")
    _add_trust_flag(p)
    p.set_defaults(func=cmd_outlier)

    p = sub.add_parser("export", help="convert a trained run to edge formats and check parity")
    p.add_argument("run", help="run directory (or its bundle/)")
    p.add_argument("--formats", type=_csv_list, default=None,
                   help=f"comma-separated, or all (the default: {', '.join(n for n, f in FORMATS.items() if f.default)}; "
                        f"see `edgeship formats`)")
    p.add_argument("--calib-size", type=_positive_int, default=300, help="calibration images for int8 (default 300)")
    p.add_argument("--io", choices=("uint8", "int8", "float"), default="uint8",
                   help="input/output type of tflite_int8 (default uint8: camera pixels as they are)")
    p.add_argument("--max-drop", type=_points, metavar="PP",
                   help="accuracy budget for int8 on the validation split: when plain int8 loses more, try other "
                        "calibration, 16-bit activations and float layers, and keep the fastest that fits")
    p.add_argument("--diagnose", action="store_true",
                   help="per-layer quantization error of every int8 artifact in the report (always done for one "
                        "that loses more than the budget)")
    p.add_argument("--also-openvino", action="store_true",
                   help="parity of each .tflite/.onnx under OpenVINO too, against its own runtime (edgeship[openvino])")
    _add_trust_flag(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("gate", help="exit 1 when an artifact loses too much accuracy against Keras")
    p.add_argument("report", nargs="?", help="report.json or its run directory")
    p.add_argument("--reference", help="with --candidate and --data: compare two models (.tflite/.onnx/.keras/bundle)")
    p.add_argument("--candidate", help="the model that must match the reference")
    p.add_argument("--data", help="folder with one sub-folder of images per class")
    p.add_argument("--max-drop", type=_points, metavar="PP",
                   help="allowed accuracy drop in percentage points: 1, 1pp and 1%% all mean 1 pp (default 1.0)")
    p.add_argument("--min-agreement", type=_share, metavar="FRAC",
                   help="minimum top-1 agreement with Keras: 0.98 or 98%% (default 0.98)")
    p.add_argument("--max-class-drop", type=_points, metavar="PP", help="allowed accuracy drop of any single class (pp)")
    p.add_argument("--max-prob-diff", type=_fraction, metavar="P", help="allowed max |p_keras - p_artifact|")
    p.add_argument("--min-accuracy", type=_share, metavar="FRAC",
                   help="absolute floor on test accuracy for Keras and every artifact: 0.9 or 90%%")
    p.add_argument("--min-speedup", type=_number(float, what="a factor such as 1.5"), metavar="X",
                   help="fail a quantized .tflite/.onnx less than X times faster than its float32 sibling here")
    p.add_argument("--allow-collapsed", action="store_true",
                   help="pass a model that predicts only a few of its classes on the test split (it fails otherwise)")
    p.add_argument("--require-gpu-delegate", action="store_true",
                   help="fail a .tflite/.onnx that no phone accelerator (TFLite GPU delegate, NNAPI, CoreML) takes "
                        "whole, by the report's device-readiness check")
    p.add_argument("--config", default=None,
                   help="read defaults from [tool.edgeship.gate] of this file (default ./pyproject.toml if present; "
                        "a --config that cannot be read is an error)")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML: one test case per artifact")
    p.add_argument("--remeasure", action="store_true",
                   help="run Keras and every artifact on the test split again and fail when a recorded figure "
                        "differs: for a run made elsewhere (hashes bind figures to files, not to the truth)")
    p.add_argument("--target", action="append", metavar="ssh://user@host[:port]",
                   help="also run every artifact on this device and gate its figures (repeatable)")
    _add_ssh_flags(p)
    _add_model_hint_flags(p)
    _add_trust_flag(p)
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("bench", help="latency, throughput and memory per artifact, here and on SSH targets")
    p.add_argument("models", nargs="+", help="run directories, bundle directories or model files")
    p.add_argument("--runs", type=_positive_int, default=100, help="timed runs per row (default 100)")
    p.add_argument("--warmup", type=_non_negative_int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--min-seconds", type=_non_negative_float, default=0.0, help="keep timing until this many seconds passed too")
    p.add_argument("--threads", type=_int_list, help="comma-separated thread counts, e.g. 1,2,4 (default: backend's)")
    p.add_argument("--batch", type=_int_list, help="comma-separated batch sizes (default 1)")
    p.add_argument("--backend", default="all", help="all, tflite, onnxruntime[-cpu|-cuda|-tensorrt], openvino, keras[-gpu] or "
                                                    "tensorflow[-gpu]; several with commas: tflite,onnxruntime-cpu")
    p.add_argument("--target", action="append", metavar="ssh://user@host[:port]", help="also bench there (repeatable)")
    p.add_argument("--no-local", action="store_true", help="bench only on the --target machines")
    p.add_argument("--profile", action="store_true", help="also the time per node and per op type of each TFLite "
                                                          "and ONNX artifact here (bench.md: top ops, a plot per op type)")
    _add_ssh_flags(p)
    p.add_argument("--compare", metavar="BASELINE.json", help="bench.json of an earlier run: exit 1 on a slowdown")
    p.add_argument("--max-slowdown", default="10%", help="allowed slowdown against --compare (default 10%%)")
    p.add_argument("--out", help="write bench.json/.csv/.md/.png here (default: the run directory, if one)")
    p.add_argument("--json", help="also write the full result to this JSON file")
    _add_trust_flag(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("predict", help="classify images with a bundle or a lone .tflite/.onnx (no TensorFlow)")
    p.add_argument("model", help="bundle directory, .tflite or .onnx")
    p.add_argument("images", nargs="*", help="image files, folders (searched recursively) or globs")
    p.add_argument("--top-k", type=_positive_int, default=1)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--backend", default="auto", help="auto, tflite, onnxruntime or openvino (reads .tflite and .onnx)")
    p.add_argument("--threads", type=_positive_int, default=None)
    p.add_argument("--artifact", help="which artifact of a bundle (default: the first this machine can run)")
    p.add_argument("--provider", help="ONNX Runtime provider: cpu, cuda or tensorrt (default: best available)")
    p.add_argument("--video", metavar="FILE_OR_CAMERA_INDEX", help="classify frames of a video (needs OpenCV)")
    p.add_argument("--every", type=_positive_int, default=1, help="with --video: classify every Nth frame")
    p.add_argument("--max-frames", type=_positive_int, help="with --video: stop after this many classified frames")
    _add_model_hint_flags(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="the whole pipeline on the embedded digits dataset")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--data", help="dataset folder (default: OUT/data, written from scikit-learn's digits)")
    p.add_argument("--epochs", type=_positive_int, default=15)
    p.add_argument("--runs", type=_positive_int, default=200, help="timed runs per artifact")
    p.set_defaults(func=cmd_demo)

    sub.add_parser("formats", help="list export formats").set_defaults(func=cmd_formats)
    sub.add_parser("backbones", help="list backbones").set_defaults(func=cmd_backbones)
    return parser


def parse_arguments(argv=None) -> argparse.Namespace:
    """Options may come anywhere, as `xargs` and habit put them: `predict MODEL --json a.png b.png`,
    `bench M1 --runs 5 M2`. argparse's intermixed parsing does not support sub-commands, so the command is
    found first and its own parser (whose usage line an error then shows) parses the rest intermixed."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv)  # -h, no command, a typo: argparse's own message and usage
    args = commands[argv[0]].parse_intermixed_args(_attach_dash_values(argv[1:]))
    args.command = argv[0]
    return args


DASH_VALUED = ("--input-range", "--mean")  # their values may start with '-': `--input-range -1,1`


def _attach_dash_values(argv: list[str]) -> list[str]:
    """`--input-range -1,1` as `--input-range=-1,1`: argparse would take '-1,1' for an option."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in DASH_VALUED and i + 1 < len(argv) and re.match(r"-[\d.]", argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


INTERRUPTED = {  # what Ctrl-C leaves, per command, and how to go on
    "train": "; run the same command again to resume from the last finished epoch",
    "export": ("; the export did not finish, so its new files are not recorded in the bundle (predict and gate "
               "refuse them): run the same command again"),
    "gate": "; nothing was gated",
    "sweep": "; run the same command again: finished trials are kept, the one cut off runs again",
    "demo": "; run it again (training resumes, export and bench run again)",
}


class _TerminalText:
    """sys.stdout/stderr with control characters from outside strings made visible ('?'): a class name, a
    model's metadata or a board's reply cannot colour, retitle or rewrite the user's terminal (ANSI CSI, OSC,
    bidirectional overrides). Line breaks, tabs and the progress bar's carriage return pass."""

    _UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._stream.write(self._UNSAFE.sub("?", text) if isinstance(text, str) else text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv=None) -> int:
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _TerminalText(sys.stdout), _TerminalText(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _main(argv=None) -> int:
    args = parse_arguments(argv)
    _log_to_stderr()
    try:
        return args.func(args)
    except EdgeshipError as exc:
        print(f"edgeship: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"edgeship: interrupted{INTERRUPTED.get(args.command, '')}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_is_closed():
            raise
        # `edgeship formats | head -3`: the reader stopped reading. No traceback; exit as a Unix tool killed by
        # SIGPIPE does (141), never 0: a gate whose verdict was cut off must not read as passed under pipefail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # a full or read-only disk is the user's to fix: one line, not a traceback
        from edgeship.core.errors import disk_failure

        reason = disk_failure(exc)
        if reason is None:
            raise
        where = getattr(exc, "filename", None)
        print(f"edgeship: error: {reason}" + (f" ({where})" if where and str(where) not in reason else "")
              + "; free space or choose a writable --out (earlier results were left as they were)", file=sys.stderr)
        return 2


def _stdout_is_closed() -> bool:
    """Was the broken pipe our stdout (rather than a child process's)? Its reader gone, a flush fails again, or
    the pipe polls POLLERR."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


class _LowercaseLevel:
    """`edgeship: warning: ...`, matching `edgeship: error: ...`."""

    def __init__(self, fmt: str):
        import logging

        self._formatter = logging.Formatter(fmt)

    def format(self, record) -> str:
        import copy

        record = copy.copy(record)
        record.levelname = record.levelname.lower()
        return self._formatter.format(record)


def _log_to_stderr() -> None:
    """The library logs to 'edgeship'; the CLI shows its warnings as `edgeship: warning: ...` lines."""
    import logging

    class CurrentStderr(logging.StreamHandler):
        """Writes to whatever sys.stderr is when it logs (main() filters it for the call's duration)."""

        stream = property(lambda self: sys.stderr, lambda self, value: None)

    logger = logging.getLogger("edgeship")
    if not logger.handlers:
        handler = CurrentStderr()
        handler.setFormatter(_LowercaseLevel("edgeship: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


__all__ = ["main", "build_parser", "UsageError"]
