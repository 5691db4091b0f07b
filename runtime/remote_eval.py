"""The on-target evaluation agent: classify a stream of test images with every artifact, on the device.

`edgeship gate RUN --target ssh://…` ships the runtime, this file and the artifacts, then runs

    python -m edgeship.runtime.remote_eval ARTIFACTS_JSON < tar stream of images

ARTIFACTS_JSON lists {"name", "path"}. Images arrive as a tar stream in test-split order and go through the
device's own decode -> preprocess -> invoke path a chunk at a time, so a 1 GB board copes with any split.
stdout is the protocol, one JSON object per line: first the environment and each artifact's sha256 and
runtime, then per chunk the probabilities (base64 float32, row-major), then {"done": N}.
"""

from __future__ import annotations

import base64
import json
import sys
import tarfile

import numpy as np

from .classifier import Classifier
from .environment import fingerprint
from .errors import EdgeshipError
from .fileio import sha256_file

CHUNK = 64


def _emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def evaluate_stream(artifacts: list[dict], stream, chunk: int = CHUNK) -> int:
    classifiers = {a["name"]: Classifier.load(a["path"]) for a in artifacts}
    _emit({"environment": fingerprint(),
           "artifacts": {a["name"]: {"sha256": sha256_file(a["path"]), "runtime": classifiers[a["name"]].runtime}
                         for a in artifacts}})
    first = next(iter(classifiers.values()))  # every artifact of a bundle takes the same input
    done, images = 0, []

    def flush():
        nonlocal done, images
        if not images:
            return
        pixels = np.stack(images)
        probs = {name: base64.b64encode(np.ascontiguousarray(c.predict_proba(pixels), dtype=np.float32).tobytes())
                 .decode("ascii") for name, c in classifiers.items()}
        _emit({"start": done, "n": len(images), "probs": probs})
        done, images = done + len(images), []

    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()
            images.append(first.prepare([data])[0])  # the device's own decode and resize
            if len(images) >= chunk:
                flush()
    flush()
    _emit({"done": done})
    return done


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as handle:
        artifacts = json.load(handle)
    try:
        evaluate_stream(artifacts, sys.stdin.buffer)
    except EdgeshipError as exc:
        _emit({"error": str(exc)})
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
