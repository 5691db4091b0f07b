"""`train --strategy multi-worker` for real: two worker processes on loopback, each given its TF_CONFIG.

Both write to the same --out, as workers on shared storage would: the chief alone may write it, both must end
with identical weights, and the same seed must give the same weights again.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..conftest import REPO

DIGEST = re.compile(r"weights sha256 ([0-9a-f]{64})")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _train_two_workers(data: Path, out: Path, scratch: Path) -> list[subprocess.CompletedProcess]:
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        env = {**os.environ, "TMPDIR": str(scratch), "TF_CPP_MIN_LOG_LEVEL": "3", "EDGESHIP_PROGRESS": "0",
               "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "edgeship", "train", str(data), "--out", str(out), "--backbone", "small_cnn",
             "--image-size", "32", "--epochs", "4", "--batch-size", "16", "--strategy", "multi-worker", "--seed", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO))
    results = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    for index, result in enumerate(results):
        assert result.returncode == 0, f"worker {index} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return results


def _digest(result: subprocess.CompletedProcess) -> str:
    match = DIGEST.search(result.stdout)
    assert match, result.stdout
    return match.group(1)


@pytest.mark.slow
def test_two_workers_train_one_model_and_only_the_chief_writes(small_digits, tmp_path):
    from edgeship.core.pixels import iter_pixel_chunks
    from edgeship.core.splits import SplitManifest
    from edgeship.runtime.spec import Bundle

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "shared" / "run"
    chief, worker = _train_two_workers(small_digits, out, scratch)

    assert _digest(chief) == _digest(worker)  # synchronous data parallelism: one model, two copies
    assert "worker 0 of 2" in chief.stdout and "bundle:" in chief.stdout
    assert "worker 1 of 2" in worker.stdout and "the chief writes the bundle" in worker.stdout
    assert list(scratch.iterdir()) == []  # the non-chief's private run is gone
    bundle = Bundle.load(out / "bundle")
    training = bundle.provenance["training"]
    assert training["strategy"] == "multi-worker" and training["weights_sha256"] == _digest(chief)

    # the chief's test figures were predicted under the strategy: recompute them here on one process
    import keras

    model = keras.saving.load_model(out / "bundle" / "model.keras")
    paths, y = SplitManifest.read(out / "bundle" / "splits.csv").paths_and_indices("test", bundle.info.labels)
    probs = np.concatenate([model.predict(chunk.astype(np.float32), verbose=0)
                            for _, chunk in iter_pixel_chunks(paths, bundle.info.input, show_progress=False)])
    confusion = np.zeros((len(bundle.info.labels),) * 2, dtype=int)
    np.add.at(confusion, (y, probs.argmax(axis=1)), 1)
    report = json.loads((out / "training" / "report.json").read_text())
    assert report["test"]["confusion_matrix"] == confusion.tolist()
    assert report["test"]["accuracy"] == pytest.approx(float(np.mean(probs.argmax(axis=1) == y)))

    # the same seed trains the same weights again
    again, _ = _train_two_workers(small_digits, tmp_path / "shared" / "again", scratch)
    assert _digest(again) == _digest(chief)


def test_worker_role_from_tf_config(monkeypatch):
    from edgeship.runtime.errors import UsageError
    from edgeship.train.strategy import worker_role

    cluster = {"worker": ["a:1", "b:2", "c:3"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert worker_role("multi-worker").chief and worker_role("multi-worker").workers == 3
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 2}}))
    assert not worker_role("multi-worker").chief
    assert worker_role(None).chief  # TF_CONFIG means nothing without --strategy multi-worker
    with_chief = {"chief": ["m:0"], **cluster}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))
    assert not worker_role("multi-worker").chief and worker_role("multi-worker").workers == 4
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UsageError, match="TF_CONFIG is not valid JSON"):
        worker_role("multi-worker")
