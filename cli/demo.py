"""`edgeship demo`: the whole pipeline on the embedded digits dataset, ending with a summary table."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from .arguments import positive_int

NAME = "demo"
HELP = "the whole pipeline on the embedded digits dataset"
INTERRUPTED = "; run it again (training resumes, export and bench run again)"


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--data", help="dataset folder (default: OUT/data, written from scikit-learn's digits)")
    p.add_argument("--epochs", type=positive_int, default=15)
    p.add_argument("--runs", type=positive_int, default=200, help="timed runs per artifact")


def run(args) -> int:
    return run_demo(args.out, epochs=args.epochs, data=args.data, bench_runs=args.runs)


def _step(number: int, text: str) -> None:
    print(f"\n[{number}/7] {text}", flush=True)


DEMO_NPUS = ("ethos-u55-128", "ethos-u65-256")


def _microcontrollers(out: Path, report):
    """The int8 .tflite on TensorFlow Lite Micro (arena, agreement) and, where Vela is installed, on two Ethos-U
    NPUs (Vela's estimates, into the report): one line each. The report as it now stands."""
    from edgeship.core.report import load_report

    _step(6, "microcontrollers: the tensor arena TFLM allocates; Ethos-U NPUs: Vela's estimates")
    for row in (a for a in report.artifacts if a.format == "tflite"):
        other = row.other_runtime("tflm")
        if other is not None:
            print(f"TFLM {row.name}: " + (other.error or f"agreement {other.agreement:.2%} with LiteRT, arena "
                                          f"{other.arena_bytes:,} bytes, flash {other.flash_bytes:,} bytes"))
    if importlib.util.find_spec("ethosu") is not None:
        from edgeship.bench.npu import map_run

        for name, m in map_run(out, list(DEMO_NPUS)):
            print(f"NPU {m.config} {name}: " + (m.error or f"{m.npu_ops}/{m.npu_ops + m.cpu_ops} operators on the NPU, "
                                                 f"{m.estimated_ms:.3f} ms estimated, optimized file {m.file}"))
        report, _ = load_report(out)
    return report


def _predict_three(bundle: Path) -> None:
    from edgeship.core.splits import SplitManifest
    from edgeship.runtime.classifier import Classifier

    classifier = Classifier.load(bundle, artifact="tflite_int8")
    test_rows = SplitManifest.read(bundle / "splits.csv").select("test")
    for row in test_rows[:: max(1, len(test_rows) // 3)][:3]:  # three different classes
        top = classifier.predict(row.path, top_k=1)[0]
        print(f"{row.path.name}: {top.describe()}, true label {row.label}")


def run_demo(out: str | Path = "runs/demo", epochs: int = 15, data: str | Path | None = None,
             bench_runs: int = 200) -> int:
    from edgeship.bench import bench_run
    from edgeship.core.layout import RunLayout
    from edgeship.core.report import SUMMARY_HEADERS, summary_rows, text_table
    from edgeship.export import export_run
    from edgeship.export.formats import DEFAULT_FORMATS
    from edgeship.export.gate import GateThresholds, evaluate_gate
    from edgeship.runtime.backends import BACKENDS
    from edgeship.train import SplitConfig, TrainConfig, train, write_digits_dataset

    started = time.time()
    out = Path(out)
    data = Path(data) if data else out / "data"

    _step(1, f"dataset: scikit-learn's handwritten digits as PNG class folders in {data}")
    if out in data.parents:
        RunLayout(out).claim()  # the data lives inside the run: claim the folder before writing it
    write_digits_dataset(data, size=32)

    _step(2, "train: small CNN, 32 px, best checkpoint by validation accuracy")
    result = train(data, out, TrainConfig(backbone="small_cnn", image_size=32, epochs=epochs, batch_size=32,
                                          splits=SplitConfig(seed=0), overwrite=True))
    print(f"Keras test accuracy {result.test_accuracy:.2%} after {result.epochs_run} epochs")

    micro = BACKENDS["tflm"].probe() is not None  # the `mcu` extra: TensorFlow Lite Micro (and Vela)
    _step(3, "export: Keras, TFLite float32 / float16 / int8 (with MediaPipe metadata), ONNX float32 / int8"
             + (", int8 as C source; parity on the test split, the .tflite files on TensorFlow Lite Micro too"
                if micro else "; parity on the test split"))
    exported = export_run(out, [*DEFAULT_FORMATS, *(["tflite_int8_c"] if micro else [])],
                          also_backends=("tflm",) if micro else ())

    _step(4, "gate: max drop 1.0 pp, min agreement 0.98")
    verdicts = evaluate_gate(exported.parity, GateThresholds(max_drop_pp=1.0, min_agreement=0.98))
    for verdict in verdicts:
        print(verdict.line())

    _step(5, f"bench: batch 1, {bench_runs} timed runs per artifact")
    benched = bench_run(out, runs=bench_runs, warmup=20)
    report, report_md = benched
    for failure in benched.failed:  # GPU rows on a machine without one are "unavailable", not failures
        print(f"failed: {failure}")
    report = _microcontrollers(out, report) if micro else report

    _step(7, "predict: the int8 TFLite model on three test images, no TensorFlow needed")
    _predict_three(result.layout.bundle)

    print()
    print(text_table(SUMMARY_HEADERS, summary_rows(report)))
    print(f"\nKeras reference accuracy {report.reference.accuracy:.2%} on {report.reference.n_test} "
          f"test images; demo took {time.time() - started:.0f} s")
    print(f"report: {report_md.resolve()}")
    print(f"bundle: {result.layout.bundle.resolve()}")
    return 0 if all(v.passed for v in verdicts) and not exported.failed and benched.ok else 1
