"""Accuracy-budgeted int8: when plain post-training int8 loses more than `--max-drop` points on the validation
split, try the usual fixes cheapest first and keep the fastest artifact that meets the budget.

(a) other calibration: ONNX Runtime's MinMax / Entropy / Percentile and per-tensor weights; TFLite with more
    calibration images;
(b) 16-bit activations (TFLite 16x8, the whole model: the TF converter cannot do it per layer);
(c) keeping the worst layers in float, added greedily in the order of the per-layer diagnosis until the
    budget holds (TFLite QuantizationDebugger `denylisted_nodes`, ONNX `nodes_to_exclude`); then each earlier
    layer group is dropped again when the budget still holds without it;
(d) quantization-aware training (core/qat.py), the last rung, only when no full-int8 variant held the budget: a
    brief fine-tune with fake quantization on the training split, converted from its learned ranges. It keeps all
    of int8's speed, so it wins over a slower float-layer variant.
Every choice is made on the validation split (the calib split when there is none); the test split is read
only afterwards, by parity, so the gate's figures stay honest. Each trial is recorded: calibration, layers
left float, validation accuracy, latency here at 1 thread.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
from edgeship.core.records import QuantCost, QuantizationRecord, QuantTrial
from edgeship.core.splits import stratified_indices
from edgeship.runtime.backends import BACKENDS
from edgeship.runtime.classifier import inference_batch
from edgeship.runtime.timing import session_times

from .gate import GateThresholds
from .quant_diagnosis import LayerError

logger = logging.getLogger("edgeship")
DEFAULT_BUDGET_PP = GateThresholds().max_drop_pp  # without --max-drop, an int8 artifact past the gate's default is diagnosed
MIN_AGREEMENT = GateThresholds().min_agreement  # a variant must also agree with Keras on val as the gate asks
DIAGNOSIS_IMAGES = 64
MAX_LAYER_GROUPS = 8
TIMING_WARMUP, TIMING_RUNS = 5, 30
LATENCY_TIE = 0.10  # trials this close in p50 are equally fast


@dataclass
class ValidationSet:
    """The images every choice is made on, with the Keras model's accuracy on them."""

    split: str
    images: np.ndarray
    labels: np.ndarray
    reference_accuracy: float
    reference_top: np.ndarray  # the Keras model's top-1 class per image: agreement is gated too


@dataclass(frozen=True)
class Recipe:
    """How one int8 candidate is quantized (ai-edge-quantizer's recipe, ONNX Runtime's CalibrationMethod). The
    report's labels are derived from it; nothing reads a label back into settings."""

    method: str  # "min-max" (the TFLite converter's) or an ONNX Runtime CalibrationMethod: MinMax, Entropy, ...
    per_channel: bool = True  # weights
    activation_bits: int = 8  # 16: TFLite's 16x8 (int16 activations, int8 weights)
    calibration_images: int | None = None  # None: the images export calibrated the plain artifact on
    float_nodes: tuple[str, ...] = ()  # kept in float (TFLite denylisted_nodes, ONNX nodes_to_exclude)
    equalized: bool = False  # cross-layer equalization of the Keras model first (export/equalize.py)
    bias_corrected: bool = False  # then empirical bias correction on the calibration images (export/bias_correction.py)
    quantization_aware: bool = False  # fine-tuned with fake quantization, converted from the learned ranges

    @property
    def plain(self) -> bool:
        return self == Recipe(self.method) and self.method in ("min-max", "MinMax")

    @property
    def calibration(self) -> str:
        if self.quantization_aware:
            return "ranges learned by quantization-aware training"
        if self.method == "min-max":
            if self.activation_bits == 16:
                return "min-max, int16 activations"
            return f"min-max, {self.calibration_images or ''} calib images".replace(",  ", ", ")
        return f"{self.method}, {'per-channel' if self.per_channel else 'per-tensor'} weights"

    @property
    def label(self) -> str:
        if self.quantization_aware:
            return "quantization-aware training (QAT)"
        prefix = ", ".join(["equalized"] * self.equalized + ["bias-corrected"] * self.bias_corrected)
        if self.float_nodes:
            return f"{prefix + ', ' if prefix else ''}{len(self.float_nodes)} node(s) float"
        if prefix and self == Recipe(self.method, equalized=self.equalized, bias_corrected=self.bias_corrected):
            return {"equalized": "equalized (CLE)", "bias-corrected": "bias-corrected (BC)"}.get(
                prefix, "equalized + bias-corrected (CLE + BC)")
        if self.plain:
            return "plain"
        if self.activation_bits == 16:
            return "16x8 (int16 activations)"
        return "more calibration images" if self.calibration_images else self.calibration


@dataclass
class Candidate:
    recipe: Recipe
    data: bytes
    io: str | None = None  # tflite input/output type, when it differs from the plain artifact's
    agrees_with: np.ndarray | None = None  # top-1 per val image agreement is held to, when not the float model's
    # (quantization-aware training: its fake-quantized model, which a fine-tune lets differ from the float one)

    @property
    def label(self) -> str:
        return self.recipe.label

    @property
    def calibration(self) -> str:
        return self.recipe.calibration

    @property
    def float_layers(self) -> list[str]:
        return list(self.recipe.float_nodes)


@dataclass
class Trial:
    candidate: Candidate
    val_accuracy: float
    val_agreement: float
    drop_pp: float
    p50_ms: float
    meets_budget: bool
    seconds: float = 0.0

    def record(self, float32_p50_ms: float) -> QuantTrial:
        c = self.candidate
        return QuantTrial(label=c.label, calibration=c.calibration, float_layers=c.float_layers,
                          val_accuracy=round(self.val_accuracy, 6), val_drop_pp=round(self.drop_pp, 4),
                          val_agreement=round(self.val_agreement, 6), p50_ms=round(self.p50_ms, 4),
                          speedup_vs_float32=round(float32_p50_ms / self.p50_ms, 3) if self.p50_ms else None,
                          seconds=round(self.seconds, 2), meets_budget=self.meets_budget)


class Int8Strategy(Protocol):
    """What the search needs from one file format (a format registers its class as `int8_strategy`). Like
    ONNX Runtime's CalibrationDataReader: a protocol of a few lines, not a base class."""

    backend: str  # the runtime backend that measures a candidate (runtime.backends.BACKENDS)
    plain: Recipe  # the recipe of the plain artifact export made
    equalization: object  # export.equalize.Equalized once the equalized candidate was made, else None
    bias_correction: object  # export.bias_correction.BiasCorrection once a corrected candidate was made, else None

    def variants(self) -> Iterator[Candidate]:
        """Cross-layer equalization, then (a) and (b): other calibrations and activation widths, cheapest first."""

    def with_float_layers(self, base: Candidate, nodes: list[str]) -> Candidate:
        """(c): BASE's recipe with NODES kept in float."""

    def quantization_aware(self) -> Candidate | None:
        """(d): the file converted from a fake-quantized fine-tune of the model; None where the export cannot
        train one (no training split)."""

    def diagnose(self, plain: bytes, images: np.ndarray) -> list[LayerError]:
        """The per-layer quantization error of PLAIN on IMAGES, worst first."""

    def float_model(self) -> bytes:
        """The float32 model of the same format: what the chosen variant's latency is set against."""

    def close(self) -> None:
        """Remove temporary files."""


@dataclass
class Refinement:
    """What the search (or the diagnosis alone) gives back for one int8 artifact."""

    data: bytes
    io: str | None = None
    layers: list[dict] | None = None
    quantization: QuantizationRecord | None = None
    warnings: list[str] = field(default_factory=list)


def measure(backend: str, data: bytes, val: ValidationSet, scratch: Path | None = None) -> tuple[float, float, float]:
    """(accuracy and top-1 agreement with Keras on the validation images, median latency in ms at 1 thread
    here) of one candidate; its file lives under SCRATCH (the export's) while it is measured."""
    runtime = BACKENDS[backend]
    with tempfile.TemporaryDirectory(prefix="edgeship-trial-", dir=scratch) as tmp:
        path = Path(tmp, "model" + runtime.suffixes[0])
        path.write_bytes(data)
        session = runtime.open(path, threads=1)
        step = inference_batch(*val.images.shape[1:3], most=64)
        probs = np.concatenate([session.run(val.images[i:i + step]) for i in range(0, len(val.images), step)])
        p50 = float(np.median(session_times(session, val.images[:1], TIMING_WARMUP, TIMING_RUNS)))
    top = probs.argmax(axis=1)
    return float(np.mean(top == val.labels)), float(np.mean(top == val.reference_top)), p50


def refine_int8(strategy_class: Callable[..., Int8Strategy], job, plain: bytes, val: ValidationSet, max_drop: float | None,
                diagnose: bool = False) -> Refinement:
    """Check a plain int8 artifact on VAL with its format's strategy (the registry's `int8_strategy`);
    diagnose it when asked or when it breaks the budget; search for a fix when `max_drop` is given and broken.
    Returns the bytes to ship and the records for the report."""
    strategy = strategy_class(job)
    try:
        return _refine(strategy, plain, val, max_drop, diagnose)
    finally:
        strategy.close()


def _refine(strategy: Int8Strategy, plain: bytes, val: ValidationSet, max_drop: float | None, diagnose: bool) -> Refinement:
    budget = DEFAULT_BUDGET_PP if max_drop is None else max_drop
    trials: list[Trial] = []
    clock = [time.perf_counter()]  # each trial's seconds: making it (inside the strategy) and measuring it

    def attempt(candidate: Candidate) -> Trial:
        against = val if candidate.agrees_with is None else replace(val, reference_top=candidate.agrees_with)
        accuracy, agreement, p50 = measure(strategy.backend, candidate.data, against, strategy.job.scratch_root)
        drop = (val.reference_accuracy - accuracy) * 100.0
        trial = Trial(candidate, accuracy, agreement, drop, p50,
                      drop <= budget + 1e-9 and agreement >= MIN_AGREEMENT, time.perf_counter() - clock[0])
        clock[0] = time.perf_counter()
        trials.append(trial)
        logger.info(f"int8 trial {candidate.label}: {val.split} accuracy {accuracy:.2%} (Δ {-drop:+.2f} pp), "
                    f"{p50:.3f} ms")
        return trial

    plain_trial = attempt(Candidate(strategy.plain, plain))
    result = Refinement(plain)
    layers = None
    if diagnose or not plain_trial.meets_budget:
        layers = strategy.diagnose(plain, val.images[stratified_indices(val.labels, DIAGNOSIS_IMAGES)])
        result.layers = [layer.to_json() for layer in layers]
    if max_drop is None:
        return result
    if not plain_trial.meets_budget:
        _search(strategy, attempt, trials, layers or [])
        if not _full_int8_holds(trials):
            clock[0] = time.perf_counter()
            candidate = strategy.quantization_aware()  # (d): the last rung
            if candidate is not None:
                attempt(candidate)
    passing = [t for t in trials if t.meets_budget]
    chosen = _fastest(passing) if passing else max(trials, key=lambda t: t.val_accuracy)
    if not passing:
        result.warnings.append(f"no int8 variant kept the {val.split} accuracy within {max_drop:g} pp of Keras "
                               f"(best: {chosen.candidate.label}, Δ {-chosen.drop_pp:+.2f} pp); it is kept")
    result.data, result.io = chosen.candidate.data, chosen.candidate.io
    _, _, float_p50 = measure(strategy.backend, strategy.float_model(), val, strategy.job.scratch_root)
    result.quantization = QuantizationRecord(
        budget_pp=max_drop, split=val.split, n_images=int(len(val.labels)),
        reference_val_accuracy=val.reference_accuracy, chosen=chosen.candidate.label,
        chosen_trial=trials.index(chosen),  # labels may repeat (two different 3-node float sets)
        calibration=chosen.candidate.calibration, float_layers=chosen.candidate.float_layers,
        met_budget=bool(passing), min_agreement=MIN_AGREEMENT, trials=[t.record(float_p50) for t in trials],
        equalized_pairs=strategy.equalization.pairs if strategy.equalization else None,
        equalization_skipped=strategy.equalization.skipped if strategy.equalization else None,
        bias_corrected_layers=strategy.bias_correction.layers if strategy.bias_correction else None,
        bias_correction_skipped=strategy.bias_correction.skipped if strategy.bias_correction else None,
        quantization_aware=_qat_record(strategy, trials),
        cost=QuantCost(p50_ms=round(chosen.p50_ms, 4), plain_int8_p50_ms=round(plain_trial.p50_ms, 4),
                       vs_plain_int8=round(chosen.p50_ms / plain_trial.p50_ms, 3) if plain_trial.p50_ms else None,
                       float32_p50_ms=round(float_p50, 4), vs_float32=round(chosen.p50_ms / float_p50, 3)))
    return result


def _full_int8_holds(trials: list[Trial]) -> bool:
    """Whether a variant with every layer in int8 (8-bit activations) met the budget: then nothing later can be
    faster, and quantization-aware training is not run."""
    return any(t.meets_budget and t.candidate.recipe.activation_bits == 8 and not t.candidate.recipe.float_nodes
               for t in trials)


def _qat_record(strategy: Int8Strategy, trials: list[Trial]) -> dict | None:
    if not any(t.candidate.recipe.quantization_aware for t in trials):
        return None
    outcome = strategy.job.quantization_aware()
    return outcome.to_json() if outcome is not None else None


def _fastest(passing: list[Trial]) -> Trial:
    """The fastest trial; latencies within LATENCY_TIE of the best count as equal (timing noise must not
    decide), and then the one with the fewest float nodes, then the earliest, wins."""
    best = min(t.p50_ms for t in passing)
    close = [t for t in passing if t.p50_ms <= best * (1.0 + LATENCY_TIE)]
    return min(close, key=lambda t: len(t.candidate.float_layers))


def _search(strategy: Int8Strategy, attempt, trials: list[Trial], layers: list[LayerError]) -> None:
    """Equalization, (a) and (b), then (c) on the int8 recipe that did best, unless an all-int8 variant already
    holds the budget; (c) stops at the first float-layer set within budget."""
    for candidate in strategy.variants():
        attempt(candidate)  # a variant within budget may still be slow (16x8 has no fast kernels): go on
    int8_trials = [t for t in trials if t.candidate.recipe.activation_bits == 8]  # float layers go on int8 recipes
    if _full_int8_holds(trials):
        return  # an all-int8 variant holds the budget: layers left in float could only be slower
    base = max(int8_trials, key=lambda t: t.val_accuracy).candidate
    groups: list[list[str]] = []
    for layer in layers[:MAX_LAYER_GROUPS]:
        chosen = {node for group in groups for node in group}
        new = [node for node in layer.keep_float if node not in chosen]
        if not new:
            continue
        groups.append(new)
        trial = _float_trial(strategy, attempt, base, _flat(groups))
        if trial is None:
            return  # this set cannot be converted; larger ones hold it
        if trial.meets_budget:
            break
    else:
        return
    for group in list(groups[:-1])[::-1]:  # drop earlier groups the budget does not need
        rest = [g for g in groups if g is not group]
        trial = _float_trial(strategy, attempt, base, _flat(rest))
        if trial is not None and trial.meets_budget:
            groups = rest


def _float_trial(strategy: Int8Strategy, attempt, base: Candidate, nodes: list[str]) -> Trial | None:
    """BASE with NODES in float, measured; None when the converter cannot make it (TFLite's QuantizationDebugger
    refuses a denylist that leaves no quantized op to verify): the trials so far stand, the format is not lost."""
    try:
        candidate = strategy.with_float_layers(base, nodes)
    except Exception as exc:
        logger.warning(f"int8 trial {base.recipe.label} with {len(nodes)} node(s) float could not be converted "
                       f"({(str(exc).splitlines() or [type(exc).__name__])[0][:160]}); the search stops there")
        return None
    return attempt(candidate)


def _flat(groups: list[list[str]]) -> list[str]:
    return [node for group in groups for node in group]
