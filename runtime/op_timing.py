"""Where one model's time goes, measured with the device's own runtime (it ships to boards with the bench agent).

- ONNX: ONNX Runtime's profiler (`SessionOptions.enable_profiling`): each node's kernel time per run.
- TFLite: LiteRT 2.3's Python API exposes no op profiler, so each op is timed as a one-op model (made on the
  workstation by `edgeship.core.tflite_graph.single_op_models`) through the same interpreter, kernels and
  thread count. The report says which method gave the figures.
Both give the median over RUNS after WARMUP, in ms, and the whole model's median from runs interleaved with
the nodes' (on a shared machine speed drifts by tens of percent within seconds; interleaving cancels it).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ONNX_METHOD = "onnxruntime profiler (SessionOptions.enable_profiling), kernel time per node"
TFLITE_METHOD = "each op timed alone as a one-op model (LiteRT's Python API has no op profiler)"


def random_feed(shape, dtype, seed: int = 0) -> np.ndarray:
    """Inputs of the given shape and dtype (unknown dimensions 1): an op's time does not depend on the values."""
    shape = [d if isinstance(d, (int, np.integer)) and d > 0 else 1 for d in shape]
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(dtype)


def time_tflite_models(models: list[bytes], whole: bytes, threads: int | None, warmup: int,
                       runs: int) -> tuple[list[float], float]:
    """(median ms of one invoke of each one-op model, median ms of the whole model). Each op runs RUNS times in a
    row (its weights and input stay in cache, as they are when the op before it has just written that input;
    round-robin over the ops measured them 1.5x slower than inside the whole model), and a block of whole-model
    runs is timed between every few ops, so a shared machine's drift in speed touches both alike."""
    from .tflite_session import _tflite_interpreter

    interpreter_cls = _tflite_interpreter()[0]

    def invoker(data: bytes):
        interpreter = interpreter_cls(model_content=data, **({"num_threads": threads} if threads else {}))
        interpreter.allocate_tensors()
        for k, detail in enumerate(interpreter.get_input_details()):
            interpreter.set_tensor(detail["index"], random_feed(detail["shape"], detail["dtype"], k))
        return interpreter.invoke

    whole_call, medians, whole_times = invoker(whole), [], []
    step = max(1, len(models) // WHOLE_BLOCKS)
    for first in range(0, len(models), step):
        whole_times += _times(whole_call, warmup, max(1, runs // 2))
        for data in models[first:first + step]:
            medians.append(float(np.median(_times(invoker(data), warmup, runs))))
    whole_times += _times(whole_call, warmup, max(1, runs // 2))
    return medians, float(np.median(whole_times))


WHOLE_BLOCKS = 8


def _times(call, warmup: int, runs: int) -> list[float]:
    import time

    for _ in range(warmup):
        call()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def onnx_node_times(path: str | Path, threads: int | None, warmup: int,
                    runs: int) -> tuple[list[tuple[str, str, float]], float]:
    """((node name, op type, median ms) per node in the order ONNX Runtime ran them, the whole model's median ms
    in a session without the profiler, its runs interleaved with the profiled ones)."""
    import onnxruntime as ort

    def session(profile_prefix: str | None):
        options = ort.SessionOptions()
        if profile_prefix:
            options.enable_profiling, options.profile_file_prefix = True, profile_prefix
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    with tempfile.TemporaryDirectory(prefix="edgeship-profile-") as tmp:
        profiled, plain = session(os.path.join(tmp, "profile")), session(None)
        feed = {i.name: random_feed(i.shape, _onnx_dtype(i.type), k) for k, i in enumerate(plain.get_inputs())}
        whole = _interleaved([lambda: plain.run(None, feed), lambda: profiled.run(None, feed)], warmup, runs)[0]
        events = json.loads(Path(profiled.end_profiling()).read_text())
    times, kinds = defaultdict(list), {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            name = event["name"][: -len("_kernel_time")]
            times[name].append(event["dur"] / 1000.0)
            kinds[name] = (event.get("args") or {}).get("op_name", "?")
    return [(name, kinds[name], float(np.median(values[-runs:]))) for name, values in times.items()], whole


def _interleaved(calls, warmup: int, runs: int) -> list[float]:
    """Median ms of each call over RUNS rounds after WARMUP rounds; one round calls each once, in order."""
    import time

    for _ in range(warmup):
        for call in calls:
            call()
    times = [[] for _ in calls]
    for _ in range(runs):
        for record, call in zip(times, calls):
            start = time.perf_counter()
            call()
            record.append((time.perf_counter() - start) * 1000.0)
    return [float(np.median(record)) for record in times]


def profile_case(case: dict) -> dict:
    """One artifact's profile as plain JSON (a board has no edgeship.core): CASE names the file, its format,
    threads, warmup and runs, and for TFLite the one-op models cut on the workstation (`op_models`: bytes or
    paths, None for an op on constants alone, which runs once at load: 0 ms per image) with their names and ops."""
    threads, warmup, runs = case.get("threads"), case["warmup"], case["runs"]
    if case["format"] == "tflite":
        models = [m if isinstance(m, bytes) or m is None else Path(m).read_bytes() for m in case["op_models"]]
        timed, whole = time_tflite_models([m for m in models if m is not None], Path(case["path"]).read_bytes(),
                                          threads, warmup, runs)
        times = iter(timed)
        nodes = [{"name": name, "op": op, "ms": next(times) if model is not None else 0.0}
                 for name, op, model in zip(case["op_names"], case["op_types"], models)]
        method = TFLITE_METHOD
    else:
        found, whole = onnx_node_times(case["path"], threads, warmup, runs)
        nodes = [{"name": name, "op": op, "ms": ms} for name, op, ms in found]
        method = ONNX_METHOD
    return {"method": method, "threads": threads, "runs": runs, "p50_ms": whole, "nodes": nodes}


def _onnx_dtype(type_name: str):
    return {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
            "tensor(int8)": np.int8, "tensor(int64)": np.int64, "tensor(int32)": np.int32}.get(type_name, np.float32)
