"""The benchmark matrix: artifacts x backends x threads x batch sizes, as plain JSON-able cases."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from edgeship.runtime.backends import backend_for
from edgeship.runtime.errors import UsageError
from edgeship.runtime.spec import MANIFEST_NAME, Bundle

# Backend choices per artifact family: (backend, ONNX provider). GPU rows are reported "unavailable"
# on machines without one instead of silently vanishing.
FAMILY_BACKENDS = {
    "tflite": (("tflite", None), ("openvino", None)),
    "onnxruntime": (("onnxruntime", "cpu"), ("onnxruntime", "cuda"), ("onnxruntime", "tensorrt"), ("openvino", None)),
}
OPENVINO_READS = ("tflite", "onnx")  # file formats OpenVINO opens (not ONNX Runtime's .ort)
# TensorFlow formats (the Keras reference, a SavedModel) run only on this machine, on its CPU or GPU.
TF_FAMILIES = {"keras": (("keras", None), ("keras", "gpu")),
               "tensorflow": (("tensorflow", None), ("tensorflow", "gpu"))}
GPU_PROVIDERS = ("cuda", "tensorrt", "gpu")
BACKEND_CHOICES = ("tflite", "onnxruntime", "onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-tensorrt", "openvino",
                   "keras", "keras-gpu", "tensorflow", "tensorflow-gpu", "all")


@dataclass(frozen=True)
class Artifact:
    name: str
    path: Path
    family: str  # what runs it: tflite, onnxruntime, keras or tensorflow (the rows' `backend` choices)
    format: str  # the file format: tflite, onnx, keras, saved_model
    precision: str | None = None
    size_bytes: int | None = None


def artifacts_of(target: Path, trust_code: bool = False) -> list[Artifact]:
    """A model file, or every ok artifact of a bundle directory (plus its Keras model as the reference),
    each verified against its bundle record first. A `.keras` model that holds code is refused unless
    TRUST_CODE."""
    target = Path(target)
    if target.is_file():
        if target.suffix == ".keras" and not trust_code:
            from edgeship.core.tensorflow import refuse_untrusted

            refuse_untrusted(target)
        family = backend_for(target).name
        return [Artifact(target.name, target, family, target.suffix.lstrip("."), None, target.stat().st_size)]
    if not (target / MANIFEST_NAME).is_file():
        raise UsageError(f"{target}: not a model file or an edgeship bundle/run directory")
    bundle = Bundle.load(target)
    records = [r for r in bundle.artifacts if r.ok]
    for record in records:  # never time a file the bundle does not describe
        bundle.verify_artifact(target, record)
    if not trust_code:  # a bundle is data: refuse before any process loads a model that runs its own code
        from edgeship.core.tensorflow import refuse_untrusted  # reads the archive's JSON; no TensorFlow

        for path in [target / r.file for r in records if r.format == "keras"] + [target / (bundle.keras_model or "")]:
            if path.suffix == ".keras" and path.is_file():
                refuse_untrusted(path, bundle)
    found = [Artifact(r.name, target / r.file, r.backend, r.format, r.precision, r.size_bytes) for r in records]
    if bundle.keras_model and (target / bundle.keras_model).is_file() and not any(a.family == "keras" for a in found):
        path = target / bundle.keras_model
        found.append(Artifact("keras", path, "keras", "keras", "float32", path.stat().st_size))
    return found


def _wanted(backend: str, provider: str | None, selected: tuple[str, ...]) -> bool:
    label = backend if provider is None else f"{backend}-{provider}"
    return "all" in selected or backend in selected or label in selected


def parse_backends(backend) -> tuple[str, ...]:
    """'tflite,onnxruntime-cpu' (as --threads and --batch take lists) or a sequence of names, each checked."""
    names = tuple(b.strip() for b in (backend.split(",") if isinstance(backend, str) else backend) if b.strip())
    unknown = [b for b in names if b not in BACKEND_CHOICES]
    if unknown or not names:
        raise UsageError(f"unknown backend {', '.join(unknown) or repr(backend)}; choose from "
                         f"{', '.join(BACKEND_CHOICES)} (several with commas)")
    return names


def build_cases(artifacts: list[Artifact], threads=(None,), batches=(1,), backend: str = "all", warmup: int = 10,
                runs: int = 100, min_seconds: float = 0.0, remote: bool = False, trust_code: bool = False) -> list[dict]:
    """One case per row. TRUST_CODE is the user's word that a `.keras` artifact may load outside Keras' safe
    mode; no bundle record sets it."""
    backend = parse_backends(backend)
    cases = []
    for artifact in artifacts:
        if artifact.family in TF_FAMILIES:
            if remote:
                continue  # TensorFlow formats run only here, never on a board
            if artifact.family == "tensorflow" and not trust_code and any(b.startswith("tensorflow") for b in backend):
                from edgeship.core.tensorflow import refuse_saved_model

                refuse_saved_model(artifact.path)  # asked for by name: one line, exit 2 (else the row says why)
            options = TF_FAMILIES[artifact.family]
        else:
            options = FAMILY_BACKENDS[artifact.family]
        for (name, provider), n_threads, batch in itertools.product(options, threads, batches):
            if not _wanted(name, provider, backend) or (provider in GPU_PROVIDERS and n_threads != threads[0]):
                continue  # CPU thread counts do not apply to GPU providers: one row per batch size
            if name == "openvino" and artifact.format not in OPENVINO_READS:
                continue
            label = name if provider is None else f"{name}-{provider}"
            cases.append({
                "id": f"{artifact.name}|{label}|t{n_threads or 'default'}|b{batch}",
                "name": artifact.name, "path": str(artifact.path), "backend": name, "provider": provider,
                "threads": n_threads, "batch": batch, "warmup": warmup, "runs": runs, "min_seconds": min_seconds,
                "format": artifact.format, "precision": artifact.precision, "size_bytes": artifact.size_bytes,
                "trust_code": bool(trust_code),
            })
    return cases
