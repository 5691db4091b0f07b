"""Mutated model files must give a ModelLoadError or a working model: never a crash, hang or other error."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).parents[1] / "fuzz_worker.py"
CHUNK = 25


def _mutations(data: bytes, count: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(count):
        mutated = bytearray(data)
        kind = i % 4
        if kind == 0:  # random bytes anywhere
            for _ in range(rng.integers(1, 20)):
                mutated[rng.integers(0, len(mutated))] = rng.integers(0, 256)
        elif kind == 1:  # truncated
            mutated = mutated[: rng.integers(1, len(mutated))]
        elif kind == 2:  # the tables at the front: offsets, vtables, headers
            for _ in range(rng.integers(1, 8)):
                mutated[rng.integers(0, min(4096, len(mutated)))] = rng.integers(0, 256)
        else:  # a zeroed run
            start = rng.integers(0, len(mutated))
            mutated[start : start + 64] = bytes(len(mutated[start : start + 64]))
        yield bytes(mutated)


def _run(paths, timeout):
    """Verdict per path; a worker that dies marks the file it was on as crashed and resumes after it."""
    verdicts = {}
    pending = list(paths)
    while pending:
        chunk = pending[:CHUNK]
        try:
            result = subprocess.run([sys.executable, str(WORKER), *map(str, chunk)], capture_output=True,
                                    text=True, timeout=timeout)
            lines, died = result.stdout.splitlines(), result.returncode != 0
        except subprocess.TimeoutExpired as exc:
            lines, died = (exc.stdout or b"").decode(errors="replace").splitlines(), True
        current = None
        for line in lines:
            if line.startswith("START "):
                current = line[6:]
            elif line.startswith("DONE ") and current is not None:
                verdicts[current] = line[5:]
                current = None
        if died and current is not None:
            verdicts[current] = "crashed"
        pending = [p for p in pending if str(p) not in verdicts]
        if died and current is None and pending == chunk:  # died before its first file: count it, move on
            verdicts[str(pending.pop(0))] = "crashed"
    return verdicts


@pytest.mark.slow
def test_two_hundred_mutated_models_never_crash_the_loader(exported_run, tmp_path):
    files = []
    for source, count in (("model_int8.tflite", 100), ("model_float32.tflite", 50), ("model_float32.onnx", 60)):
        data = (exported_run / "bundle" / source).read_bytes()
        for i, mutated in enumerate(_mutations(data, count, seed=len(files))):
            path = tmp_path / f"{i:03d}_{source}"
            path.write_bytes(mutated)
            files.append(path)
    assert len(files) >= 200
    verdicts = _run(files, timeout=120)
    tally = Counter(v.split()[0] for v in verdicts.values())
    bad = {p: v for p, v in verdicts.items() if v not in ("loaded", "rejected")}
    assert not bad, f"{tally}: {list(bad.items())[:5]}"
    assert tally["rejected"] > 0 and tally["loaded"] + tally["rejected"] == len(files)
