"""`export_run()`: convert the bundle's Keras model to every requested format, embed metadata, then
measure each artifact's parity with Keras on the test split and write the report."""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from edgeship.core.errors import DatasetError, disk_failure
from edgeship.core.integrity import trained_files
from edgeship.core.layout import RunLayout, run_lock
from edgeship.core.pixels import load_pixels
from edgeship.core.records import (ParityReport)
from edgeship.core.report_store import store_report
from edgeship.core.splits import SplitManifest, stratified_indices
from edgeship.core.tensorflow import load_keras_model, reference_predictor
from edgeship.core.tfenv import captured_output
from edgeship.runtime.environment import library_versions
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import atomic_replace_tree, atomic_write_bytes, sha256_bytes, sha256_file, tree_digest
from edgeship.runtime.progress import progress
from edgeship.runtime.spec import ArtifactRecord, Bundle, ModelInfo

from .formats import FORMATS, ExportFormat, resolve_formats
from .qat_sources import ladder_trainer, load_qat_model, qat_model_path
from .quant_search import ValidationSet, refine_int8
from .parity_run import evaluate_run

logger = logging.getLogger("edgeship")
DEFAULT_CALIB_SIZE = 300
RECOMMENDED_MIN_CALIB = 100
INT8_IO_TYPES = ("uint8", "int8", "float")


@dataclass
class ConversionJob:
    model: object
    info: ModelInfo
    calibration: np.ndarray | None
    int8_io: str = "uint8"  # input/output type of the full-integer TFLite model
    keras_path: Path | None = None  # the bundle's .keras file (the `keras` format ships it as is)
    val: ValidationSet | None = None  # where int8 is checked, diagnosed and tuned (never the test split)
    max_drop: float | None = None  # `--max-drop`: search int8 variants until the val drop is within it
    diagnose: bool = False  # per-layer diagnosis of every int8 artifact, not only failing ones
    more_calibration: Callable[[], np.ndarray | None] | None = None  # the whole calib split, on demand
    warnings: list[str] = field(default_factory=list)
    scratch_root: Path | None = None  # RUN/.edgeship-tmp: every temporary file of this export goes below it
    converted: dict[str, bytes] = field(default_factory=dict)  # format -> its final file (what a `source` reads)
    qat_model: object | None = None  # fake-quantized: the int8 formats convert from its learned ranges (core.qat)
    qat_trainer: Callable[[], object] | None = None  # --max-drop's last rung: a QatOutcome, made once on demand
    _workdir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    _prepared_onnx: Path | None = field(default=None, repr=False)
    _qat: object | None = field(default=None, repr=False)

    def temp_dir(self, prefix: str) -> tempfile.TemporaryDirectory:
        """A temporary folder under this export's scratch root, passed explicitly: the process-wide
        `tempfile.tempdir` is never changed, so exports on threads of one program keep apart."""
        return tempfile.TemporaryDirectory(prefix=prefix, dir=self.scratch_root)

    def _scratch(self) -> Path:
        if self._workdir is None:
            self._workdir = self.temp_dir("edgeship-export-")
        return Path(self._workdir.name)

    def saved_model(self, fake_quantized: bool = False) -> str:
        """The model (or with FAKE_QUANTIZED its QAT twin) exported once as a SavedModel: every TFLite conversion
        starts from it, which saves re-tracing the Keras model per format (MobileNetV2 224 px: 6 s once, then 5 s
        per format instead of 10 s)."""
        path = self._scratch() / ("saved_model_qat" if fake_quantized else "saved_model")
        if not path.exists():
            with captured_output():
                (self.qat_model if fake_quantized else self.model).export(str(path), format="tf_saved_model")
        return str(path)

    def quantization_aware(self):
        """The QatOutcome of --max-drop's last rung, fine-tuned once for every int8 format of this export."""
        if self._qat is None and self.qat_trainer is not None:
            self._qat = self.qat_trainer()
        return self._qat

    def prepared_onnx(self) -> Path:
        """The float ONNX model after `quant_pre_process`, made once: onnx_int8, onnx_dynamic and the int8 search
        all quantize this one graph, so the diagnosis compares tensors of the same conversion (tf2onnx numbers
        its nodes anew on every conversion)."""
        if self._prepared_onnx is None:
            from .onnx_convert import prepared_float_model

            folder = self._scratch() / "onnx"
            folder.mkdir(exist_ok=True)
            self._prepared_onnx = prepared_float_model(self, folder)
        return self._prepared_onnx

    def cleanup(self) -> None:
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir, self._prepared_onnx = None, None


@dataclass
class ExportResult:
    parity: ParityReport
    report_md: Path
    failed: list[str]


def _convert_one(fmt: ExportFormat, job: ConversionJob, bundle: Bundle, directory: Path) -> ArtifactRecord:
    record = ArtifactRecord(name=fmt.name, file=fmt.filename, format=fmt.file_format, precision=fmt.precision,
                            backend=fmt.backend, io=job.int8_io if fmt.takes_io else None)
    started = time.perf_counter()
    output = None
    try:
        with captured_output() as output:
            data = fmt.convert(job)
            if fmt.int8_strategy is not None and job.val is not None and job.qat_model is None:
                refinement = refine_int8(fmt.int8_strategy, job, data, job.val, job.max_drop,
                                         job.diagnose)
                data, record.io = refinement.data, refinement.io or record.io
                record.layers = refinement.layers
                record.quantization = refinement.quantization.to_json() if refinement.quantization else None
                job.warnings += [f"{fmt.name}: {w}" for w in refinement.warnings]
        # nothing in the file depends on when it was converted: the same run exported twice gives the same bytes
        # (the export's time is in the report)
        metadata = {**bundle.info.to_dict(), "format": fmt.name, "precision": fmt.precision,
                    "provenance": {"model_sha256": bundle.provenance.get("model_sha256"),
                                   "split_sha256": bundle.provenance.get("split", {}).get("sha256"),
                                   "model_created_at": bundle.provenance.get("created_at"),
                                   "versions": library_versions()}}
        data = fmt.embed(data, metadata)
        size, digest = _store(data, directory / fmt.filename)
        if isinstance(data, bytes) and any(f.source == fmt.name for f in FORMATS.values()):
            job.converted[fmt.name] = data  # kept only where another format is made from it
    except Exception as exc:  # one failing format must not stop the others
        if disk_failure(exc):
            raise  # a full or read-only disk fails every format: stop, keep the previous files and records
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        tail = output.tail() if output is not None and output.text else ""
        record.status, record.error = "failed", detail + (f" [{tail}]" if tail else "")
        return record
    record.size_bytes, record.sha256, record.model_sha256 = size, digest, bundle.provenance.get("model_sha256")
    record.convert_seconds, record.versions = round(time.perf_counter() - started, 2), library_versions()
    return record


def _store(data: bytes | Path, target: Path) -> tuple[int, str]:
    """Write a file artifact (bytes) or a directory artifact (a SavedModel) atomically; (size, sha256)."""
    if isinstance(data, Path):
        atomic_replace_tree(data, target)
        return tree_digest(target)
    atomic_write_bytes(target, data)
    return len(data), sha256_bytes(data)


def _calibration(manifest: SplitManifest, bundle: Bundle, size: int, show_progress: bool) -> tuple[np.ndarray, list[str]]:
    """`size` calib-split images drawn evenly from every class (deterministic: round-robin over the classes in
    the manifest's order; the manifest is sorted by class, so its first images would be one or two classes),
    and any warnings."""
    paths, labels = manifest.paths_and_indices("calib", bundle.info.labels)
    if not paths:
        raise DatasetError("the split manifest's calib split is empty; int8 formats need calibration images")
    warnings = []
    used = min(size, len(paths))
    few = f"; int8 ranges may be off below {RECOMMENDED_MIN_CALIB}" if used < RECOMMENDED_MIN_CALIB else ""
    if len(paths) < size:  # one warning, naming the fix: the split holds too few
        warnings.append(f"int8 calibrates on {used} image(s), all the calib split holds (--calib-size asked for "
                        f"{size}){few}; keep more apart with `edgeship train --calib-fraction 0.3 --calib-max 1000` "
                        f"(then re-export)")
    elif few:  # or the size asked for is small
        warnings.append(f"int8 calibrates on {used} image(s){few}; raise --calib-size")
    chosen = [paths[i] for i in stratified_indices(labels, size)]
    return load_pixels(chosen, bundle.info.input, "load calib images", show_progress), warnings


def export_run(run: str | Path, formats: Sequence[str] | None = None, calib_size: int = DEFAULT_CALIB_SIZE,
               show_progress: bool = True, int8_io: str = "uint8", max_drop: float | None = None,
               diagnose: bool = False, trust_code: bool = False, also_backends: Sequence[str] = ()) -> ExportResult:
    """Export, check parity, write RUN/report.{json,md}. Failed formats are reported, not raised.

    `int8_io` is the input/output type of `tflite_int8`: uint8 (camera pixels as they are), int8 or float.
    `max_drop` (percentage points): int8 artifacts that lose more on the validation split are rebuilt with
    other calibration or with their worst layers in float (see quant_search). `diagnose`: per-layer
    quantization error for every int8 artifact (it is computed anyway for one that breaks the budget).
    `trust_code`: load the run's model.keras outside Keras' safe mode (a TF-Hub bundle, a Lambda layer):
    only for a run whose author you trust, since loading then runs code that came with it.
    `also_backends`: runtime backends that read other runtimes' files (`openvino`): parity of each artifact they
    read under them too, against its own runtime (`other_runtimes`); none by default: OpenVINO in the same
    process adds about 0.15 GiB to export's peak memory.
    """
    if max_drop is not None and (isinstance(max_drop, bool) or not isinstance(max_drop, (int, float))
                                 or not 0 <= max_drop < float("inf")):
        raise UsageError(f"--max-drop must be a finite number of percentage points >= 0, got {max_drop!r}")
    if int8_io not in INT8_IO_TYPES:
        raise UsageError(f"--io must be one of {', '.join(INT8_IO_TYPES)}, got {int8_io!r}")
    chosen = resolve_formats(formats)
    layout = RunLayout.find(run)
    with run_lock(layout.root, "export"), _scratch(layout) as scratch:
        layout, bundle, model, manifest = _open_run(layout, trust_code)
        if not trust_code:
            chosen += _remade_graphs(bundle, chosen)
        calibration, warnings = (_calibration(manifest, bundle, calib_size, show_progress)
                                 if any(f.needs_calibration for f in chosen) else (None, []))
        if int8_io == "int8" and any(f.takes_io and f.backend == "tflite" for f in chosen):
            warnings.append("--io int8: MediaPipe's ImageClassifier accepts only uint8 or float32 input, so phone "
                            "apps cannot load model_int8.tflite; keep the default --io uint8 unless the target "
                            "needs int8")
        qat_model = _qat_model(layout, bundle, trust_code, max_drop, warnings)
        for warning in warnings:
            logger.warning(warning)
        job = ConversionJob(model, bundle.info, calibration, int8_io,
                            keras_path=layout.bundle / (bundle.keras_model or "model.keras"),
                            max_drop=max_drop, diagnose=diagnose, scratch_root=scratch, qat_model=qat_model)
        if any(f.int8_strategy is not None for f in chosen):
            job.val = _validation_set(manifest, bundle, model, show_progress, max_drop, job.warnings)
            job.more_calibration = lambda: _calibration(manifest, bundle, MORE_CALIB, False)[0]
            job.qat_trainer = ladder_trainer(manifest, bundle, model, job) if max_drop is not None else None
        converted = []
        try:
            for fmt in progress(chosen, total=len(chosen), desc="export", enabled=show_progress):
                converted.append(_convert_one(fmt, job, bundle, layout.bundle))
        finally:
            job.cleanup()
        # The records change in one write, after every file is in place: a kill before it leaves the old
        # records, which no longer match the new files, so gate and predict refuse instead of trusting them.
        for record in converted:
            bundle.upsert_artifact(record)
        order = {f.name: i for i, f in enumerate(chosen)}
        bundle.artifacts.sort(key=lambda r: order.get(r.name, len(order)))
        layout.report_json.unlink(missing_ok=True)  # describes the previous files from here on
        bundle.save(layout.bundle)
        return _report_parity(layout, bundle, model, manifest, show_progress, warnings + job.warnings,
                              trust_code, scratch, tuple(also_backends), made_here={r.name for r in converted if r.ok},
                              fake_quant=job.qat_model)


def _qat_model(layout: RunLayout, bundle: Bundle, trust_code: bool, max_drop: float | None, warnings: list[str]):
    """A QAT run's fake-quantized model (its int8 formats convert from it), else None; --max-drop is said not to
    apply to those files."""
    model = load_qat_model(layout.bundle, bundle, trust_code)
    if model is not None and max_drop is not None:
        warnings.append("--max-drop: this run's int8 files come from quantization-aware training (`edgeship qat`), "
                        "so the post-training ladder is not climbed on them; gate the run instead")
    return model


def _remade_graphs(bundle: Bundle, chosen: list[ExportFormat]) -> list[ExportFormat]:
    """Formats of the bundle's artifacts that only TensorFlow loads by running their own graph (a SavedModel)
    and that this export would otherwise measure as they are: without --trust-code they are converted again
    from the safe-mode model, so the parity pass never runs a graph that came from elsewhere."""
    names = {f.name for f in chosen}
    remade = [FORMATS[r.name] for r in _graph_artifacts(bundle) if r.name not in names]
    for fmt in remade:
        logger.info(f"{fmt.name}: converted again from model.keras (a SavedModel is loaded only when made here "
                    f"or with --trust-code)")
    return remade


def _graph_artifacts(bundle: Bundle) -> list[ArtifactRecord]:
    """The bundle's artifacts of a registered format that TensorFlow loads by running their graph (SavedModel)."""
    return [r for r in bundle.artifacts if r.ok and r.backend == "tensorflow" and r.name in FORMATS]


MORE_CALIB = 1000  # "more calibration images": the calib split up to this many
VAL_MAX = 500  # validation images held for int8 checks (75 MB at 224 px): a Food-101 val split would be 1.5 GB


def _validation_set(manifest: SplitManifest, bundle: Bundle, model, show_progress: bool, max_drop: float | None = None,
                    warnings: list[str] | None = None) -> ValidationSet | None:
    """The val split (else calib) with the Keras model's accuracy on it: where int8 choices are made. A MAX_DROP
    finer than one of its images is said in WARNINGS: such a budget lets no image go."""
    for split in ("val", "calib"):
        paths, labels = manifest.paths_and_indices(split, bundle.info.labels)
        if len(paths) > VAL_MAX:  # drawn evenly from every class, in bounded memory
            keep = stratified_indices(labels, VAL_MAX)
            paths, labels = [paths[i] for i in keep], labels[keep]
        if len(paths):
            images = load_pixels(paths, bundle.info.input, f"load {split} images", show_progress)
            top = reference_predictor(model, bundle.info).predict_proba(images).argmax(axis=1)
            coarse = budget_finer_than_one_image(max_drop, split, len(labels))
            if coarse and warnings is not None:
                warnings.append(coarse)
                logger.warning(coarse)
            return ValidationSet(split, images, labels, float(np.mean(top == labels)), top)
    return None


def budget_finer_than_one_image(max_drop: float | None, split: str, images: int) -> str | None:
    """What to tell a user whose --max-drop is below one validation image (then it lets no image go), else None:
    how many images would let one go, or, past the VAL_MAX the checks hold, the smallest budget that can."""
    one_image = 100.0 / images if images else 0.0
    if max_drop is None or max_drop >= one_image:
        return None
    needed = math.ceil(100.0 / max_drop - 1e-9)
    if needed <= VAL_MAX:
        fix = (f"keep at least {needed} {split} images apart (`edgeship train --val-fraction`, then export again) "
               f"or give a budget of at least {one_image:.2f}")
    else:
        fix = f"give a budget of at least {100.0 / VAL_MAX:.2f} (int8 checks hold at most {VAL_MAX} {split} images)"
    return (f"--max-drop {max_drop:g}: one of the {images} {split} images is {one_image:.2f} pp, so the budget "
            f"lets no {split} image go; {fix}")


@contextmanager
def _scratch(layout: RunLayout):
    """Conversions' temporary files go under RUN/.edgeship-tmp (handed to each step explicitly): what a killed
    export leaves there is removed at the next start (under the run lock), never piling up in /tmp."""
    layout.clean_scratch()
    layout.scratch.mkdir(parents=True, exist_ok=True)
    try:
        yield layout.scratch
    finally:
        shutil.rmtree(layout.scratch, ignore_errors=True)


def _open_run(run: str | Path | RunLayout, trust_code: bool = False):
    """(layout, bundle, Keras model, split manifest) of a run directory, after checking that model.keras
    and splits.csv are the files the bundle was trained with."""
    layout = run if isinstance(run, RunLayout) else RunLayout.find(run)
    bundle = Bundle.load(layout.bundle)
    model_path, split_path = trained_files(layout, bundle)
    model = load_keras_model(model_path, trust_code, bundle)
    manifest = SplitManifest.read(split_path)
    return layout, bundle, model, manifest


def _report_parity(layout, bundle, model, manifest, show_progress: bool, warnings=(), trust_code: bool = False,
                   scratch: Path | None = None, also_backends: Sequence[str] = (), made_here=frozenset(),
                   fake_quant=None) -> ExportResult:
    if fake_quant is None:  # a QAT run re-checked: its fake-quantized model is the second reference still
        fake_quant = load_qat_model(layout.bundle, bundle, trust_code)
    parity = evaluate_run(layout, bundle, model, manifest, show_progress, trust_code=trust_code, scratch=scratch,
                          also_backends=also_backends, made_here=made_here, fake_quant=fake_quant)
    if parity.fake_quant_reference is not None:  # bound to the bytes it describes, like the float reference
        path = qat_model_path(layout.bundle, bundle)
        parity.fake_quant_reference.update(path=f"{layout.bundle.name}/{path.name}", sha256=sha256_file(path))
    parity.warnings = list(warnings)
    report_md = store_report(layout, parity)
    return ExportResult(parity, report_md, [row.name for row in parity.artifacts if not row.ok])


def recheck_run(run: str | Path, show_progress: bool = True, trust_code: bool = False) -> ExportResult:
    """Measure parity again for the artifacts already in RUN's bundle. Every artifact must still be the file
    its record describes (see `replace_artifact` for swapping one in on purpose)."""
    layout = RunLayout.find(run)
    if not trust_code:  # a SavedModel is measured only as export makes it (unless it was put there by hand)
        graphs = [r.name for r in _graph_artifacts(Bundle.load(layout.bundle)) if not r.replaced_by_hand]
        if graphs:
            return export_run(layout.root, graphs, show_progress=show_progress)
    with run_lock(layout.root, "export"), _scratch(layout) as scratch:
        return _report_parity(*_open_run(layout, trust_code), show_progress, trust_code=trust_code, scratch=scratch)


def replace_artifact(run: str | Path, name: str, data: bytes) -> ArtifactRecord:
    """Swap in new bytes for artifact NAME on purpose (a hand-tuned model, say) and record their sha256.
    The report is removed: its figures describe the old file until `recheck_run` measures the new one."""
    layout = RunLayout.find(run)
    with run_lock(layout.root, "export"):
        bundle = Bundle.load(layout.bundle)
        record = bundle.artifact(name)
        record.size_bytes, record.sha256 = _store(data, layout.bundle / record.file)
        record.model_sha256, record.replaced_by_hand = bundle.provenance.get("model_sha256"), True
        # what export's int8 search recorded describes the bytes it made, not these
        record.layers = record.quantization = record.io = record.error = None
        record.status = "ok"
        layout.report_json.unlink(missing_ok=True)
        bundle.save(layout.bundle)
        return record
