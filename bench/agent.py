"""The benchmark agent: runs benchmark cases, each in a fresh child process, and prints JSON.

It imports only `edgeship.runtime` and `edgeship.bench.harness`, so it runs unchanged on an edge board
that has nothing but the runtime (remote.py ships exactly those files and sets PYTHONPATH to them). A fresh process per case gives
each artifact its own peak-RSS figure, and a crashing interpreter becomes a failed row, not a lost run.

    python agent.py one CASE_JSON      # one case in this process
    python agent.py many CASES_FILE    # each case in a child process; prints {"environment", "rows"}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edgeship.bench.harness import bench_artifact, summarize, time_calls
from edgeship.runtime.environment import fingerprint, gpu_description, peak_rss_mb
from edgeship.runtime.errors import EdgeshipError, UsageError

CASE_KEYS = ("id", "model", "name", "path", "backend", "provider", "threads", "batch", "format", "precision",
             "size_bytes", "kind")


def _bench_tensorflow(case: dict) -> dict:
    """The Keras reference called eagerly as in training code, or a SavedModel's serving signature
    (TensorFlow needed, local only)."""
    if case["backend"] == "tensorflow" and case.get("trust_code") is not True:  # the user's word, never a bundle's
        raise UsageError("a SavedModel runs its own graph when loaded; pass --trust-code to time it (only if you "
                         "trust its author)")
    if case.get("provider") == "gpu" and sys.platform == "linux" and gpu_description() is None:
        raise UsageError("no NVIDIA GPU here (nvidia-smi finds none)")  # known without importing TensorFlow
    from edgeship.core.tfenv import import_keras  # TensorFlow rows run only here, never on a board

    tf, keras = import_keras()
    device = "/GPU:0" if case.get("provider") == "gpu" else "/CPU:0"
    if device == "/GPU:0" and not tf.config.list_physical_devices("GPU"):
        raise UsageError("TensorFlow sees no GPU here (the tensorflow-cpu build, or no CUDA device)")
    with tf.device(device):
        return _time_tensorflow(tf, keras, case)


def _load_tensorflow(tf, keras, case: dict):
    """(call, input shape, runtime name) of a `.keras` model or a SavedModel directory."""
    if case["backend"] == "keras":  # the workstation's one Keras loader, with the bundle's safe-mode record
        from edgeship.core.tensorflow import load_keras_model

        model = load_keras_model(Path(case["path"]), case.get("trust_code") is True)
        return (lambda x: model(x, training=False)), model.input_shape[1:], f"keras {keras.__version__}"
    signature = tf.saved_model.load(case["path"]).signatures["serving_default"]
    spec = next(iter(signature.structured_input_signature[1].values()))
    return signature, tuple(spec.shape[1:]), f"tensorflow {tf.__version__} (SavedModel)"


def _time_tensorflow(tf, keras, case: dict) -> dict:
    import numpy as np

    started = time.perf_counter()
    call, (height, width, channels), runtime = _load_tensorflow(tf, keras, case)
    load_ms = (time.perf_counter() - started) * 1000
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (case["batch"], height, width, channels))
                    .astype(np.float32))
    started = time.perf_counter()
    call(x)
    first_ms = (time.perf_counter() - started) * 1000
    result = summarize(time_calls(lambda: call(x), case["warmup"], case["runs"], case["min_seconds"]), case["batch"])
    result.update(load_ms=load_ms, first_inference_ms=first_ms, runtime=runtime)
    return result


def run_one(case: dict) -> dict:
    row = {k: case.get(k) for k in CASE_KEYS}
    try:
        if case.get("kind") == "profile":  # `bench --profile` on this machine (a board): the runtime alone
            from edgeship.runtime.op_timing import profile_case

            result = {"profile": profile_case(case)}
        elif case["backend"] in ("keras", "tensorflow"):
            result = _bench_tensorflow(case)
        else:
            result = bench_artifact(case["path"], warmup=case["warmup"], runs=case["runs"],
                                    min_seconds=case["min_seconds"], threads=case["threads"], batch=case["batch"],
                                    provider=case.get("provider"), backend=case["backend"])
        row.update(result, status="ok")
    except UsageError as exc:  # e.g. the CUDA provider is not present here
        row.update(status="unavailable", error=str(exc))
    except EdgeshipError as exc:
        row.update(status="failed", error=str(exc))
    if row["status"] == "ok":
        row["peak_rss_mb"] = peak_rss_mb()
    return row


def run_cases(cases: list[dict], timeout: float = 900, on_row=None, python: str = sys.executable) -> tuple[list[dict], bool]:
    """Each case in its own child process. Returns (rows, interrupted); Ctrl-C keeps finished rows."""
    rows, env = [], {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        for case in cases:
            try:
                done = subprocess.run([python, str(Path(__file__).resolve()), "one", json.dumps(case)],
                                      capture_output=True, text=True, timeout=timeout, env=env)
                lines = done.stdout.strip().splitlines()
                if done.returncode == 0 and lines:
                    row = json.loads(lines[-1])
                else:
                    tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
                    row = {**{k: case.get(k) for k in CASE_KEYS}, "status": "failed",
                           "error": f"benchmark process died (exit {done.returncode}): {tail[:300]}"}
            except subprocess.TimeoutExpired:
                row = {**{k: case.get(k) for k in CASE_KEYS}, "status": "failed", "error": f"timed out after {timeout:.0f} s"}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    except KeyboardInterrupt:
        return rows, True
    return rows, False


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in ("one", "many"):
        print(__doc__, file=sys.stderr)
        return 2
    if args[0] == "one":
        print(json.dumps(run_one(json.loads(args[1]))))
        return 0
    cases = json.loads(Path(args[1]).read_text())
    rows, interrupted = run_cases(cases)
    print(json.dumps({"environment": fingerprint(), "rows": rows, "interrupted": interrupted}))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
