"""The benchmark matrix: artifacts x backends x threads x batch sizes, as plain JSON-able cases."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from edgeship.runtime.backends import BACKENDS, backend_for
from edgeship.runtime.errors import UsageError
from edgeship.runtime.spec import MANIFEST_NAME, Bundle

# TensorFlow formats (the Keras reference, a SavedModel) run only on this machine, on its CPU or GPU: they are
# bench's own rows, not runtime backends (the board never has TensorFlow).
TF_BACKENDS = {"keras": (("keras", None), ("keras", "gpu")),
               "tensorflow": (("tensorflow", None), ("tensorflow", "gpu"))}
GPU_PROVIDERS = ("cuda", "tensorrt", "gpu")


def backend_rows(backend: str, file_format: str) -> tuple[tuple[str, str | None], ...]:
    """(backend, provider) rows for an artifact, from the backend registry: its own runtime once per provider,
    then every runtime that also reads its file format. GPU rows are reported "unavailable" on machines without
    one instead of silently vanishing."""
    if backend in TF_BACKENDS:
        return TF_BACKENDS[backend]
    own = BACKENDS[backend]
    others = [b for b in BACKENDS.values() if b.name != backend and file_format in b.reads]
    return tuple((b.name, provider) for b in (own, *others) for provider in b.providers)


def _label(name: str, provider: str | None) -> str:
    return name if provider is None else f"{name}-{provider}"


def backend_choices() -> tuple[str, ...]:
    """What `bench --backend` takes: every registered runtime (and runtime-provider), the TensorFlow rows, all."""
    names = [name for b in BACKENDS.values() for name in (b.name, *(_label(b.name, p) for p in b.providers if p))]
    names += [_label(name, provider) for rows in TF_BACKENDS.values() for name, provider in rows]
    return (*dict.fromkeys(names), "all")


@dataclass(frozen=True)
class Artifact:
    name: str
    path: Path
    backend: str  # what runs it as its own file: tflite, onnxruntime, keras or tensorflow
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
        backend = backend_for(target).name
        return [Artifact(target.name, target, backend, target.suffix.lstrip("."), None, target.stat().st_size)]
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
    if bundle.keras_model and (target / bundle.keras_model).is_file() and not any(a.backend == "keras" for a in found):
        path = target / bundle.keras_model
        found.append(Artifact("keras", path, "keras", "keras", "float32", path.stat().st_size))
    return found


def _wanted(backend: str, provider: str | None, selected: tuple[str, ...]) -> bool:
    everything = "all" in selected and (backend not in BACKENDS or BACKENDS[backend].bench_default)
    return everything or backend in selected or _label(backend, provider) in selected


def parse_backends(backend) -> tuple[str, ...]:
    """'tflite,onnxruntime-cpu' (as --threads and --batch take lists) or a sequence of names, each checked."""
    names = tuple(b.strip() for b in (backend.split(",") if isinstance(backend, str) else backend) if b.strip())
    choices = backend_choices()
    unknown = [b for b in names if b not in choices]
    if unknown or not names:
        raise UsageError(f"unknown backend {', '.join(unknown) or repr(backend)}; choose from "
                         f"{', '.join(choices)} (several with commas)")
    return names


def build_cases(artifacts: list[Artifact], threads=(None,), batches=(1,), backend: str = "all", warmup: int = 10,
                runs: int = 100, min_seconds: float = 0.0, remote: bool = False, trust_code: bool = False) -> list[dict]:
    """One case per row. TRUST_CODE is the user's word that a `.keras` artifact may load outside Keras' safe
    mode; no bundle record sets it."""
    backend = parse_backends(backend)
    cases = []
    for artifact in artifacts:
        if artifact.backend in TF_BACKENDS:
            if remote:
                continue  # TensorFlow formats run only here, never on a board
            if artifact.backend == "tensorflow" and not trust_code and any(b.startswith("tensorflow") for b in backend):
                from edgeship.core.tensorflow import refuse_saved_model

                refuse_saved_model(artifact.path)  # asked for by name: one line, exit 2 (else the row says why)
        options = backend_rows(artifact.backend, artifact.format)
        for (name, provider), n_threads, batch in itertools.product(options, threads, batches):
            if not _wanted(name, provider, backend) or (provider in GPU_PROVIDERS and n_threads != threads[0]):
                continue  # CPU thread counts do not apply to GPU providers: one row per batch size
            label = _label(name, provider)
            cases.append({
                "id": f"{artifact.name}|{label}|t{n_threads or 'default'}|b{batch}",
                "name": artifact.name, "path": str(artifact.path), "backend": name, "provider": provider,
                "threads": n_threads, "batch": batch, "warmup": warmup, "runs": runs, "min_seconds": min_seconds,
                "format": artifact.format, "precision": artifact.precision, "size_bytes": artifact.size_bytes,
                "trust_code": bool(trust_code),
            })
    return cases
