"""What a candidate costs before it is trained: latency, size and static cost do not depend on the weights.

Each architecture is built with random weights, converted to every precision of the space (the format
registry's converters, the same calls export makes), and benched on every target with edgeship's own bench
(`bench.run_bench`, which marks a QEMU-emulated board's rows). Candidates over budget here are never trained.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from edgeship.core.formats import FORMATS
from edgeship.core.static_cost import static_cost
from edgeship.runtime.fileio import atomic_write_bytes

from .space import Architecture

logger = logging.getLogger("edgeship")
LOCAL = "local"
TFLM = "tflm"  # a target that is measured, not timed: TensorFlow Lite Micro's arena and flash (and Vela's estimate)
BENCH_BACKENDS = {"tflite": "tflite", "onnxruntime": "onnxruntime-cpu"}  # a format's runtime -> bench's backend
CALIBRATION_IMAGES = 8  # random pixels: the ranges do not change the speed or the size of an int8 model


@dataclass
class FormatCost:
    """One (architecture, format) before training: its file, size, static cost and p50 per target."""

    format: str
    file: str | None = None
    size_bytes: int | None = None
    macs: int | None = None
    params: int | None = None
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # target -> p50 at batch 1
    emulated: dict[str, bool] = field(default_factory=dict)  # target -> measured under QEMU user mode
    error: str | None = None
    arena_bytes: int | None = None  # TFLM's tensor arena (target tflm)
    flash_bytes: int | None = None  # the file plus TFLM's code allowance
    npu_ms: float | None = None  # Vela's estimate on the budget's Ethos-U configuration
    npu_cpu_ops: int | None = None  # operators Vela leaves on the CPU
    micro_error: str | None = None  # why TFLM or Vela gave no figure

    def micro(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "flash_bytes": self.flash_bytes, "npu_ms": self.npu_ms}

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict) -> FormatCost:
        return cls(**data)


# (files, targets, threads) -> {file: {target: (p50 ms or None, emulated)}}; tests inject known figures
BenchFiles = Callable[[Sequence[Path], Sequence[str], int], dict]


def bench_files(files: Sequence[Path], targets: Sequence[str], threads: int = 1, runs: int = 50, ssh=None) -> dict:
    """p50 of each file on each target with edgeship's bench (batch 1, THREADS threads)."""
    from edgeship.bench.runner import BenchSettings, run_bench

    backend = ",".join(sorted(set(BENCH_BACKENDS.values())))  # each file runs on its own runtime only
    remote = [t for t in targets if t != LOCAL]
    outcome = run_bench(list(files), BenchSettings(runs=runs, warmup=max(5, runs // 10), threads=(threads,),
                                                   backend=backend, show_progress=False),
                        targets=remote, ssh=ssh, local=LOCAL in targets, out_dir=None)
    labels = {t: target_label(t) for t in targets}
    figures = {Path(f).name: {t: (None, False) for t in targets} for f in files}
    for row in outcome.rows:
        target = next((t for t, label in labels.items() if label == row.target), row.target)
        if row.ok and row.model in figures and row.latency_ms:
            figures[row.model][target] = (float(row.latency_ms["p50"]), bool(row.emulated))
    for failure in outcome.failed:
        logger.warning(f"sweep bench: {failure}")
    return figures


def timed_targets(targets: Sequence[str]) -> list[str]:
    """The targets bench times (every one but the microcontroller's runtime)."""
    return [t for t in targets if t != TFLM]


def micro_figures(cost: FormatCost, path: Path, tflm: bool, npu: str | None) -> None:
    """TFLM's arena and flash (TFLM), Vela's estimate (NPU) of one untrained file, into COST: none depends on the
    weights. A file they will not take is a reason in `micro_error`, never a failed sweep."""
    from edgeship.bench.npu import compile_for_npu
    from edgeship.runtime.errors import ModelLoadError
    from edgeship.runtime.tflm_session import TFLMSession

    if FORMATS[cost.format].file_format != "tflite":
        cost.micro_error = "TensorFlow Lite Micro and Vela take .tflite files only"
        return
    if tflm:
        try:
            session = TFLMSession(path)
        except ModelLoadError as exc:
            cost.micro_error = str(exc).removeprefix(f"{path}: ")[:300]
            return
        cost.arena_bytes, cost.flash_bytes = session.arena_bytes, session.flash_bytes
    if npu and FORMATS[cost.format].precision == "int8":
        mapping = compile_for_npu(path, npu, path.parent)
        if mapping.error:
            cost.micro_error = mapping.error
        else:
            cost.npu_ms, cost.npu_cpu_ops = mapping.estimated_ms, mapping.cpu_ops


def target_label(target: str) -> str:
    """The name bench gives TARGET's rows: `local`, or ssh's user@host:port."""
    from edgeship.targets.ssh import SSHTarget

    return target if target == LOCAL else SSHTarget.parse(target).label


def measure_architecture(arch: Architecture, formats: Sequence[str], n_classes: int, folder: Path,
                         targets: Sequence[str], threads: int = 1, seed: int = 0,
                         bench: BenchFiles | None = None, npu: str | None = None) -> dict[str, FormatCost]:
    """Random weights -> every format's file under FOLDER -> bench on TARGETS (TFLM: its arena and flash; NPU:
    Vela's estimate). A format that fails to convert is a cost with an error (never trained), not a failed sweep."""
    from edgeship.core.tfenv import import_keras
    from edgeship.export.exporter import ConversionJob
    from edgeship.runtime.spec import InputSpec, ModelInfo
    from edgeship.train.backbones import build_classifier, get_backbone

    tf, keras = import_keras()
    keras.utils.set_random_seed(seed)
    size = get_backbone(arch.backbone).input_size(arch.image_size)
    options = {"alpha": arch.alpha} if arch.alpha is not None else {}
    model = build_classifier(arch.backbone, n_classes, size, None, **options)  # the weights do not change the cost
    calibration = np.random.default_rng(seed).uniform(0, 255, (CALIBRATION_IMAGES, size, size, 3)).astype(np.float32)
    info = ModelInfo(tuple(f"class{i}" for i in range(n_classes)), InputSpec(height=size, width=size))
    job = ConversionJob(model, info, calibration, scratch_root=folder)
    folder.mkdir(parents=True, exist_ok=True)
    costs, files = {}, []
    try:
        for name in formats:
            fmt, cost = FORMATS[name], FormatCost(name)
            try:
                data = fmt.convert(job)
            except Exception as exc:  # a converter that refuses this architecture: that candidate is out
                cost.error = f"does not convert: {str(exc).splitlines()[0][:200]}"
                costs[name] = cost
                continue
            path = folder / f"{arch.key}.{fmt.filename}"
            atomic_write_bytes(path, data)
            read = static_cost(path)
            cost.file, cost.size_bytes = path.name, len(data)
            cost.macs, cost.params = (read.macs, read.params) if read is not None else (None, None)
            if TFLM in targets or npu:
                micro_figures(cost, path, TFLM in targets, npu)
            costs[name] = cost
            files.append(path)
    finally:
        job.cleanup()
        keras.backend.clear_session()
    timed = timed_targets(targets)
    figures = (bench or bench_files)(files, timed, threads) if files and timed else {}  # bench: see BenchFiles
    for cost in costs.values():
        for target, (ms, emulated) in figures.get(cost.file, {}).items():
            cost.latency_ms[target], cost.emulated[target] = ms, emulated
    return costs
