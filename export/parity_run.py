"""Parity in three steps, each callable (and tested) on its own: `open_artifacts` (a row per bundle record, its
bytes verified, its readiness and static cost read, a Predictor per artifact that loads) → `stream_test_split`
(each chunk of test images decoded once and sent through the reference and every artifact) → `score` (each stage's
record merged into its row: parity figures, latency, speed-ups, other runtimes; the `ParityReport`)."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
from edgeship.core.errors import DatasetError, UntrustedCodeError
from edgeship.core.layout import REFERENCE_PROBS, RunLayout
from edgeship.core.metrics import collapse_figures
from edgeship.core.pixels import CHUNK_IMAGES, iter_pixel_chunks
from edgeship.core.records import (LatencyStage, ParityReport, ParityRow, ParityStage, QuantizationRecord, Reference,
                                   RuntimeParity, TimingStage)
from edgeship.core.speedup import attach_speedups, quick_latency
from edgeship.core.static_cost import static_cost
from edgeship.core.splits import SplitManifest, portable_path
from edgeship.core.tensorflow import load_artifact, reference_predictor
from edgeship.runtime.environment import fingerprint
from edgeship.runtime.backends import BACKENDS
from edgeship.runtime.classifier import Classifier
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import atomic_write_bytes, sha256_file
from edgeship.runtime.spec import Bundle, ModelInfo

from .collapse_causes import collapsed, explain_collapse
from .formats import FORMATS
from .parity import accuracy, compare_predictions, describe_flipped, majority_accuracy
from .readiness import readiness

logger = logging.getLogger("edgeship")


FAKE_QUANT = "@fake_quant"  # the predictor key of a QAT run's fake-quantized Keras model


def evaluate_run(layout: RunLayout, bundle: Bundle, model, manifest: SplitManifest, show_progress: bool,
                 chunk_size: int = CHUNK_IMAGES, trust_code: bool = False, scratch: Path | None = None,
                 also_backends: Sequence[str] = (), made_here=frozenset(), fake_quant=None) -> ParityReport:
    """Parity of every exported artifact with Keras on the test split: open the artifacts, stream the test
    images through them and the reference, score what came out. MADE_HERE: artifacts this process just
    converted from the safe-mode model (a SavedModel among them loads without TRUST_CODE). FAKE_QUANT: a QAT
    run's fake-quantized model, a second reference each artifact is also set against (`vs_fake_quant`)."""
    paths, labels = manifest.paths_and_indices("test", bundle.info.labels)
    if not len(paths):
        raise DatasetError("the split manifest's test split is empty; nothing to measure parity on")
    rows, predictors = open_artifacts(layout, bundle, trust_code, scratch, also_backends, made_here)
    if fake_quant is not None:
        predictors[FAKE_QUANT] = reference_predictor(fake_quant, bundle.info)
    streamed = stream_test_split(paths, bundle.info, reference_predictor(model, bundle.info), predictors, rows,
                                 chunk_size, show_progress)
    second = streamed.probs.pop(FAKE_QUANT, None)
    report = score(layout, bundle, rows, predictors, streamed, paths, labels)
    if second is not None:
        _against_fake_quant(report, rows, streamed, second, labels)
    return report


def _from_learned_ranges(name: str) -> bool:
    """Whether export converts format NAME from a QAT run's fake-quantized model: the full-int8 formats and the
    files made from them (the C array); float formats come from the float model."""
    fmt = FORMATS.get(name)
    while fmt is not None and fmt.int8_strategy is None and fmt.source:
        fmt = FORMATS.get(fmt.source)
    return fmt is not None and fmt.int8_strategy is not None


def _against_fake_quant(report: ParityReport, rows: list[ParityRow], streamed: "Streamed", fake: np.ndarray,
                        labels: np.ndarray) -> None:
    """The second Δ of a QAT run: each artifact against the fake-quantized Keras model it was converted from
    (the first, `accuracy_delta_pp`, is against the float model the user trained)."""
    fake_accuracy = accuracy(fake, labels)
    report.fake_quant_reference = {"accuracy": fake_accuracy, "n_test": int(len(labels)),
                                   "agreement_with_float": float(np.mean(fake.argmax(1) == streamed.reference.argmax(1)))}
    for row in rows:
        probs = streamed.probs.get(row.name)
        if probs is not None and _from_learned_ranges(row.name):
            row.vs_fake_quant = {"agreement": float(np.mean(probs.argmax(1) == fake.argmax(1))),
                                 "accuracy_delta_pp": round((accuracy(probs, labels) - fake_accuracy) * 100.0, 4),
                                 "max_abs_prob_diff": float(np.abs(probs.astype(np.float64) - fake).max())}


def open_artifacts(layout: RunLayout, bundle: Bundle, trust_code: bool = False, scratch: Path | None = None,
                   also_backends: Sequence[str] = (), made_here=frozenset()) -> tuple[list[ParityRow], dict]:
    """A row per bundle record (its bytes verified, its readiness checked) and a Predictor per artifact that
    loads; one that will not load is a failed row. ALSO_BACKENDS: each artifact they read under them too.
    An artifact that would run its own code (a SavedModel not MADE_HERE) without TRUST_CODE stops the
    command: UntrustedCodeError, exit 2."""
    rows, predictors = [], {}
    for record in bundle.artifacts:
        row = ParityRow(record.name, record.format, record.precision, record.status, record.error,
                        path=f"{layout.bundle.name}/{record.file}", sha256=record.sha256, size_bytes=record.size_bytes,
                        convert_seconds=record.convert_seconds, layers=record.layers,
                        quantization=QuantizationRecord.from_json(record.quantization) if record.quantization else None)
        if record.ok:
            row.sha256 = bundle.verify_artifact(layout.bundle, record)  # the bytes measured, not the record
            row.readiness = readiness(record.name, layout.bundle / record.file, scratch)
            row.static_cost = static_cost(layout.bundle / record.file)
            try:
                predictors[record.name] = load_artifact(bundle, layout.bundle, record,
                                                        trust_code or record.name in made_here)
            except UntrustedCodeError:
                raise
            except Exception as exc:  # an artifact that converts but will not load is a failed artifact
                row.status, row.error = "failed", f"runs badly: {str(exc).splitlines()[0][:300]}"
        rows.append(row)
    for name in also_backends:
        predictors.update(_other_runtime(layout, bundle, predictors, name, rows))
    return rows, predictors


def other_runtime_key(artifact: str, backend: str) -> str:
    """The predictor key of ARTIFACT run by another runtime BACKEND: `tflite_int8@openvino`."""
    return f"{artifact}@{backend}"


def _other_runtime(layout: RunLayout, bundle: Bundle, predictors: dict, name: str, rows: list[ParityRow]) -> dict:
    """Predictors of the artifacts backend NAME reads (where it is installed), to score against their own runtime.
    A file it will not run gets its reason in the row's `other_runtimes`."""
    if name not in BACKENDS or not BACKENDS[name].reads:
        readers = ", ".join(b.name for b in BACKENDS.values() if b.reads)
        raise UsageError(f"--also-backend {name}: not a runtime that reads other runtimes' files ({readers})")
    found, missing = {}, None
    for record in (r for r in bundle.artifacts if r.name in predictors and r.format in BACKENDS[name].reads):
        if missing is None:
            try:
                found[other_runtime_key(record.name, name)] = Classifier.load(layout.bundle, artifact=record.name,
                                                                              backend=name)
                continue
            except UsageError as exc:  # not installed here: every row it would have says how to install it
                missing = str(exc)
            except Exception as exc:
                reason = str(exc).splitlines()[0].removeprefix(f"{layout.bundle / record.file}: ")[:400]
                logger.warning(f"{record.name}: {name} cannot run it ({reason})")
                _refused(rows, record.name, name, reason)
                continue
        _refused(rows, record.name, name, missing)
    return found


def _refused(rows: list[ParityRow], artifact: str, backend: str, reason: str) -> None:
    row = next(r for r in rows if r.name == artifact)
    row.other_runtimes = [*(row.other_runtimes or []),
                          RuntimeParity(BACKENDS[backend].probe() or backend, backend=backend, error=reason)]


@dataclass
class Streamed:
    """What the test split gave: the reference's probabilities, each artifact's, the first chunk of pixels
    (kept for the diagnosis of a collapse) and the seconds per step."""

    reference: np.ndarray
    probs: dict[str, np.ndarray]
    first_chunk: np.ndarray
    seconds: dict[str, float]
    total_seconds: float


def stream_test_split(paths, info: ModelInfo, reference_model, predictors: dict, rows: list[ParityRow],
                      chunk_size: int = CHUNK_IMAGES, show_progress: bool = True) -> Streamed:
    """Each chunk of test images is decoded once and goes through the reference and every artifact before the
    next is read, so peak memory does not grow with the split (only N x classes probabilities are kept). An
    artifact that fails to run is marked failed in ROWS and leaves PREDICTORS; the others go on."""
    reference_parts, parts, first_chunk = [], {name: [] for name in predictors}, None
    clock = _Stopwatch(["decode", "keras", *predictors])
    chunks = iter_pixel_chunks(paths, info.input, chunk_size, "parity", show_progress)
    while (item := clock.timed("decode", next, chunks, None)) is not None:
        chunk = item[1]
        first_chunk = chunk if first_chunk is None else first_chunk
        reference_parts.append(clock.timed("keras", reference_model.predict_proba, chunk))
        for name, predictor in list(predictors.items()):
            try:
                parts[name].append(clock.timed(name, predictor.predict_proba, chunk))
            except Exception as exc:
                row = next((r for r in rows if r.name == name), None)
                if row is not None:
                    row.status, row.error = "failed", f"runs badly: {str(exc).splitlines()[0][:300]}"
                else:  # another runtime's run of an artifact: dropped, the artifact's own figures stand
                    logger.warning(f"{name}: stopped running ({str(exc).splitlines()[0][:200]})")
                del predictors[name]
    return Streamed(np.concatenate(reference_parts), {name: np.concatenate(parts[name]) for name in predictors},
                    first_chunk, clock.report(), clock.total())


def _other_runtimes(name: str, probs: np.ndarray, predictors: dict, streamed: Streamed, labels) -> list:
    """Artifact NAME under every other runtime that ran it, scored against its own runtime's PROBS."""
    found = []
    for key, other in streamed.probs.items():
        if key.startswith(f"{name}@"):
            session = predictors[key].session
            found.append(RuntimeParity(predictors[key].runtime, float(np.mean(other.argmax(1) == probs.argmax(1))),
                                       float(np.abs(other.astype(np.float64) - probs).max()), accuracy(other, labels),
                                       backend=key.split("@", 1)[1], arena_bytes=getattr(session, "arena_bytes", None),
                                       flash_bytes=getattr(session, "flash_bytes", None),
                                       io_bytes=getattr(session, "io_bytes", None)))
    return found


def score(layout: RunLayout, bundle: Bundle, rows: list[ParityRow], predictors: dict, streamed: Streamed, paths,
          labels: np.ndarray) -> ParityReport:
    """The figures: each artifact against the reference, a collapse explained, latency and speed-ups, and the
    reference's probabilities saved for an on-target gate."""
    reference, info = streamed.reference, bundle.info
    probs_path = layout.root / REFERENCE_PROBS  # what an on-target gate compares the board's answers with
    buffer = io.BytesIO()
    np.save(buffer, reference.astype(np.float32))
    atomic_write_bytes(probs_path, buffer.getvalue())
    shown_paths = [portable_path(p, layout.root) for p in paths]
    for index, row in enumerate(rows):
        if row.name not in streamed.probs:
            continue
        probs, predictor = streamed.probs[row.name], predictors[row.name]
        figures = compare_predictions(reference, probs, labels, info.labels)
        figures["flipped"] = describe_flipped(figures["flipped"], shown_paths, labels, probs, info.labels)
        if info.unknown_threshold is not None:  # what the device (and MediaPipe, from the metadata) answers "unknown" to
            figures["unknown_rejection_rate"] = float(np.mean(probs.max(axis=1) < info.unknown_threshold))
        row.merge(ParityStage(runtime=predictor.runtime, **figures))
        row.other_runtimes = [*(row.other_runtimes or []), *_other_runtimes(row.name, probs, predictors, streamed,
                                                                            labels)] or None
        fmt = FORMATS.get(row.name)  # a copy of another artifact (the C source of tflite_int8) is timed as that one
        latency_ms, settings = (quick_latency(predictor, streamed.first_chunk[:1], row.sha256)
                                if fmt is None or fmt.on_device else (None, None))
        row.merge(LatencyStage(latency_ms=latency_ms))
        row.merge(TimingStage(latency_settings=settings))
        if collapsed(row.accuracy, accuracy(reference, labels), len(info.labels)):
            sample = len(streamed.first_chunk)
            agreement = float(np.mean(probs[:sample].argmax(1) == reference[:sample].argmax(1)))
            row.diagnosis = explain_collapse(predictor, streamed.first_chunk, reference[:sample], agreement)
    attach_speedups(rows)
    curves = layout.training / "curves.png"
    threshold = info.unknown_threshold
    return ParityReport(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        bundle=layout.bundle.name,
        split_manifest=f"{layout.bundle.name}/{bundle.split_manifest}",
        split_sha256=sha256_file(layout.bundle / bundle.split_manifest),
        model_sha256=sha256_file(layout.bundle / bundle.keras_model),
        info_sha256=info.digest(),
        labels=list(info.labels),
        reference=Reference(format="keras", path=f"{layout.bundle.name}/{bundle.keras_model}",
                            probs_file=REFERENCE_PROBS, probs_sha256=sha256_file(probs_path),
                            accuracy=accuracy(reference, labels), n_test=int(len(labels)),
                            majority_accuracy=majority_accuracy(labels),
                            **collapse_figures(reference, labels, info.labels), unknown_threshold=threshold,
                            unknown_rejection_rate=(float(np.mean(reference.max(axis=1) < threshold))
                                                    if threshold is not None else None)),
        dataset=bundle.provenance.get("dataset", {}),
        training_curves=f"{curves.parent.name}/{curves.name}" if curves.is_file() else None,
        artifacts=rows,
        environment=fingerprint(),
        timing={"images": int(len(paths)), "seconds": streamed.seconds, "total_seconds": streamed.total_seconds},
    )


class _Stopwatch:
    """Seconds spent per step of the parity loop: decoding, the Keras reference, each artifact. The scale
    benchmark compares the loop's wall time with their sum (the loop should add nothing of its own)."""

    def __init__(self, names):
        self.seconds = dict.fromkeys(names, 0.0)
        self.started = time.perf_counter()

    def timed(self, name, func, *args):
        start = time.perf_counter()
        try:
            return func(*args)
        finally:
            self.seconds[name] += time.perf_counter() - start

    def report(self) -> dict[str, float]:
        return {name: round(value, 3) for name, value in self.seconds.items()}

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 3)
