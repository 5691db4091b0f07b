"""`edgeship bench --profile`: where each artifact's time goes, per node and per op type.

The node times come from runtime/op_timing.py (ONNX Runtime's profiler; for TFLite each op alone as a one-op
model). The whole model's p50 is measured in the same process, threads and rounds (interleaved), so the report
can show how much of it the node times account for. Nodes that `export --max-drop` left in float are summed apart: what
the accuracy repair cost in time."""

from __future__ import annotations

from edgeship.core.records import OpProfile
from edgeship.runtime import op_timing
from edgeship.runtime.fileio import sha256_file

from .matrix import Artifact

PROFILED_FORMATS = ("tflite", "onnx")


def profile_artifact(artifact: Artifact, threads: int | None, warmup: int = 5, runs: int = 30,
                     float_layers=()) -> OpProfile:
    """Profile one artifact here, in this process, the way the agent does on a board."""
    return from_agent(op_timing.profile_case(profile_case(artifact, "", threads, warmup, runs)), float_layers,
                      sha256_file(artifact.path))


def profile_case(artifact: Artifact, model_label: str, threads: int | None, warmup: int = 5, runs: int = 30) -> dict:
    """The agent case that profiles ARTIFACT. TFLite's one-op models are cut here (that needs TensorFlow's schema,
    which a board lacks) and travel in the case as bytes, which the SSH payload turns into files."""
    case = {"kind": "profile", "id": f"{model_label}/{artifact.name}|profile", "model": model_label,
            "name": artifact.name, "path": str(artifact.path), "format": artifact.format, "threads": threads,
            "batch": 1, "warmup": warmup, "runs": runs,
            "backend": "tflite" if artifact.format == "tflite" else "onnxruntime"}
    if artifact.format == "tflite":
        from edgeship.core.tflite_graph import single_op_models

        singles = single_op_models(artifact.path.read_bytes())
        case["op_names"] = [name for _, name, _ in singles]
        case["op_types"] = [op.name for op, _, _ in singles]
        case["op_models"] = [data for _, _, data in singles]
    return case


def remote_profile_cases(artifacts: list[Artifact], model_label: str, threads: int | None) -> list[dict]:
    """`--profile` on an SSH target: one agent case per TFLite/ONNX artifact."""
    return [profile_case(a, model_label, threads) for a in artifacts if a.format in PROFILED_FORMATS]


def from_agent(answer: dict, float_layers=(), sha256: str | None = None) -> OpProfile:
    """The agent's plain-JSON profile as the record, with the time of the nodes `--max-drop` left in float and
    the sha256 of the bytes profiled (the host's copy of the file the target ran)."""
    profile = OpProfile.from_json(answer)
    profile.sha256 = sha256
    if float_layers:
        chosen = set(float_layers)
        profile.float_layers = sorted(chosen)
        profile.float_layers_ms = float(sum(n.ms for n in profile.nodes if n.name in chosen))  # diagnosis node ids
    return profile
