"""`edgeship bench --profile`: where each artifact's time goes, per node and per op type.

The node times come from runtime/op_timing.py (ONNX Runtime's profiler; for TFLite each op alone as a one-op
model). The whole model's p50 is measured in the same process, threads and rounds (interleaved), so the report
can show how much of it the node times account for. Nodes that `export --max-drop` left in float are summed apart: what
the accuracy repair cost in time."""

from __future__ import annotations

from edgeship.core.records import NodeTime, OpProfile
from edgeship.runtime import op_timing

from .matrix import Artifact

PROFILED_FORMATS = ("tflite", "onnx")


def profile_artifact(artifact: Artifact, threads: int | None, warmup: int = 5, runs: int = 30,
                     float_layers=()) -> OpProfile:
    if artifact.format == "tflite":
        from edgeship.core.tflite_graph import single_op_models

        data = artifact.path.read_bytes()
        singles = single_op_models(data)
        timed, whole = op_timing.time_tflite_models([one for _, _, one in singles if one is not None], data, threads,
                                                    warmup, runs)
        times = iter(timed)  # an op on constants alone runs once at load: 0 ms per image
        nodes = [NodeTime(name, op.name, next(times) if one is not None else 0.0) for op, name, one in singles]
        method = op_timing.TFLITE_METHOD
    else:
        found, whole = op_timing.onnx_node_times(artifact.path, threads, warmup, runs)
        nodes = [NodeTime(name, op, ms) for name, op, ms in found]
        method = op_timing.ONNX_METHOD
    profile = OpProfile(method, threads, runs, whole, nodes)
    if float_layers:
        chosen = set(float_layers)
        profile.float_layers = sorted(chosen)
        profile.float_layers_ms = float(sum(n.ms for n in nodes if n.name in chosen))  # the diagnosis's node ids
    return profile


def remote_profile_cases(artifacts: list[Artifact], model_label: str, threads: int | None, warmup: int = 5,
                         runs: int = 30) -> list[dict]:
    """`--profile` on an SSH target: one agent case per TFLite/ONNX artifact. TFLite's one-op models are cut
    here (that needs TensorFlow's schema, which a board lacks) and travel in the case as bytes, which the
    payload turns into files; an op on constants alone has none (0 ms per image, as locally)."""
    from edgeship.core.tflite_graph import single_op_models

    cases = []
    for artifact in artifacts:
        if artifact.format not in PROFILED_FORMATS:
            continue
        case = {"kind": "profile", "id": f"{model_label}/{artifact.name}|profile", "model": model_label,
                "name": artifact.name, "path": str(artifact.path), "format": artifact.format, "threads": threads,
                "batch": 1, "warmup": warmup, "runs": runs,
                "backend": "tflite" if artifact.format == "tflite" else "onnxruntime"}
        if artifact.format == "tflite":
            singles = single_op_models(artifact.path.read_bytes())
            case["op_names"] = [name for _, name, _ in singles]
            case["op_types"] = [op.name for op, _, _ in singles]
            case["op_models"] = [data for _, _, data in singles]
        cases.append(case)
    return cases


def from_agent(answer: dict, float_layers=()) -> OpProfile:
    """The agent's plain-JSON profile (a board has no edgeship.core) as the record."""
    profile = OpProfile.from_json(answer)
    if float_layers:
        chosen = set(float_layers)
        profile.float_layers = sorted(chosen)
        profile.float_layers_ms = float(sum(n.ms for n in profile.nodes if n.name in chosen))
    return profile
