"""When an artifact's accuracy collapses, say why: rerun it with the usual preprocessing mistakes undone
(value range, colour order) and read its input quantization, instead of reporting only a number."""

from __future__ import annotations

import numpy as np
from edgeship.runtime.predictor import QuantizedInput

# (what the artifact would expect, how to turn 0-255 RGB pixels into that)
INPUT_HYPOTHESES = (
    ("inputs scaled to [0, 1]", lambda x: x.astype(np.float32) / 255.0),
    ("inputs scaled to [-1, 1]", lambda x: x.astype(np.float32) / 127.5 - 1.0),
    ("BGR channel order", lambda x: np.ascontiguousarray(x[..., ::-1])),
)
RECOVERY = 0.5  # a hypothesis explains the collapse when it wins back at least half the lost agreement


def collapsed(accuracy: float, reference_accuracy: float, n_classes: int) -> bool:
    """Accuracy fell most of the way from the reference toward chance."""
    chance = 1.0 / n_classes
    return reference_accuracy - chance > 0.05 and accuracy < chance + 0.5 * (reference_accuracy - chance)


def explain_collapse(classifier, pixels: np.ndarray, reference: np.ndarray, agreement: float) -> list[str]:
    """Findings for an artifact whose top-1 agreement with Keras collapsed. Each names the evidence."""
    findings = []
    ref_top = reference.argmax(axis=1)
    for expectation, transform in INPUT_HYPOTHESES:
        try:
            probs = classifier.predict_proba(transform(pixels))
        except Exception:  # a hypothesis the artifact cannot even run is simply not the answer
            continue
        fixed = float(np.mean(probs.argmax(axis=1) == ref_top))
        if fixed - agreement >= RECOVERY * (1.0 - agreement):
            findings.append(f"input check failed: the artifact behaves like Keras only when fed {expectation} "
                            f"(agreement {agreement:.0%} -> {fixed:.0%}); the runtime feeds 0-255 RGB as the bundle's "
                            f"input spec says: re-export with the normalization inside the model")
    quantized = classifier.input_quantization() if isinstance(classifier, QuantizedInput) else None
    if quantized is not None:
        dtype, scale, zero_point = quantized
        info = np.iinfo(dtype)
        low, high = (info.min - zero_point) * scale, (info.max - zero_point) * scale
        if low > 1.0 or high < 254.0:
            findings.append(f"quantization check failed: input scale {scale:.6g} and zero-point "
                            f"{zero_point} cover only [{low:.3g}, {high:.3g}], not the 0-255 pixels fed")
    if not findings:
        findings.append("input range, colour order and input quantization look right: suspect the conversion "
                        "itself (compare `edgeship formats` outputs, or export with another converter)")
    return findings
