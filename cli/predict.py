"""`edgeship predict`: classify files, folders or globs with any artifact; TensorFlow is never imported."""

from __future__ import annotations

import glob
import json
import sys
import time
from pathlib import Path

from edgeship.runtime.classifier import Classifier
from edgeship.runtime.errors import ImageError, UsageError
from edgeship.runtime.preprocess import IMAGE_SUFFIXES


def expand_inputs(items) -> list[Path]:
    """Files as given; folders searched recursively for images; globs expanded."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise UsageError(f"{item}: the pattern matches no file")
            found += [Path(m) for m in matches]
        else:
            found.append(path)
    return found


def run_predict(model: str, images, top_k: int = 1, as_json: bool = False, backend: str = "auto",
                threads: int | None = None, artifact: str | None = None, out=sys.stdout) -> int:
    classifier = Classifier.load(model, backend=backend, threads=threads, artifact=artifact)
    paths = expand_inputs(images)
    failures = []
    started = time.perf_counter()
    for path in paths:
        try:
            predictions = classifier.predict(path, top_k=top_k)
        except ImageError as exc:
            failures.append(str(exc))
            if as_json:
                print(json.dumps({"path": str(path), "error": str(exc)}), file=out)
            continue
        if as_json:
            print(json.dumps({"path": str(path), "predictions": [p.to_dict() for p in predictions]},
                             ensure_ascii=False), file=out)
        else:
            shown = ", ".join(f"{p.label} ({p.score:.3f})" for p in predictions)
            print(f"{path}: {shown}", file=out)
    elapsed = time.perf_counter() - started
    done = len(paths) - len(failures)
    print(f"{done} image(s) in {elapsed:.2f} s ({done / elapsed if elapsed > 0 else 0:.1f} images/s) with "
          f"{classifier.describe()}; {len(failures)} failed", file=sys.stderr)
    for failure in failures:
        print(f"  failed: {failure}", file=sys.stderr)
    return 1 if failures else 0
