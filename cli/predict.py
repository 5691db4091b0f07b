"""`edgeship predict`: classify files, folders or globs with any artifact; TensorFlow is never imported."""

from __future__ import annotations

import json
import sys
import time

from edgeship.runtime.classifier import Classifier
from edgeship.runtime.errors import ImageError, UsageError
from edgeship.runtime.inputs import expand_inputs

from .arguments import add_model_hint_flags, model_hints, positive_int

NAME = "predict"
HELP = "classify images with a bundle or a lone .tflite/.onnx (no TensorFlow)"


def add_arguments(p) -> None:
    from edgeship.runtime.backends import BACKENDS

    p.add_argument("model", help="bundle directory, .tflite or .onnx")
    p.add_argument("images", nargs="*", help="image files, folders (searched recursively) or globs")
    p.add_argument("--top-k", type=positive_int, default=1)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--backend", default="auto", help=f"auto, {', '.join(BACKENDS)}")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--artifact", help="which artifact of a bundle (default: the first this machine can run)")
    p.add_argument("--provider", help="ONNX Runtime provider: cpu, cuda or tensorrt (default: best available)")
    p.add_argument("--video", metavar="FILE_OR_CAMERA_INDEX", help="classify frames of a video (needs OpenCV)")
    p.add_argument("--every", type=positive_int, default=1, help="with --video: classify every Nth frame")
    p.add_argument("--max-frames", type=positive_int, help="with --video: stop after this many classified frames")
    add_model_hint_flags(p)


def run(args) -> int:
    return run_predict(args.model, args.images, top_k=args.top_k, as_json=args.json, backend=args.backend,
                       threads=args.threads, artifact=args.artifact, provider=args.provider, video=args.video,
                       every=args.every, max_frames=args.max_frames, hints=model_hints(args))


def _emit(key: str, name, predictions, as_json: bool, out) -> None:
    if as_json:
        print(json.dumps({key: name, "predictions": [p.to_dict() for p in predictions]}, ensure_ascii=False), file=out)
    else:
        shown = ", ".join(p.describe() for p in predictions)
        print(f"{key} {name}: {shown}" if key == "frame" else f"{name}: {shown}", file=out)


def run_predict(model: str, images=(), top_k: int = 1, as_json: bool = False, backend: str = "auto",
                threads: int | None = None, artifact: str | None = None, provider: str | None = None,
                video: str | None = None, every: int = 1, max_frames: int | None = None, out=sys.stdout,
                hints=None) -> int:
    if not images and video is None:
        raise UsageError("give image files, folders or globs, or --video FILE_OR_CAMERA_INDEX")
    classifier = Classifier.load(model, backend=backend, threads=threads, artifact=artifact, provider=provider,
                                 hints=hints)
    paths = expand_inputs(images)
    failures = []
    done = 0
    started = time.perf_counter()
    for path in paths:
        try:
            predictions = classifier.predict(path, top_k=top_k)
        except ImageError as exc:
            failures.append(str(exc))
            if as_json:
                print(json.dumps({"path": str(path), "error": str(exc)}), file=out)
            continue
        done += 1
        _emit("path", str(path), predictions, as_json, out)
    if video is not None:
        from edgeship.runtime.video import video_frames

        for index, frame in video_frames(video, every=every, max_frames=max_frames):
            _emit("frame", index, classifier.predict(frame, top_k=top_k), as_json, out)
            done += 1
    elapsed = time.perf_counter() - started
    print(f"{done} image(s) in {elapsed:.2f} s ({done / elapsed if elapsed > 0 else 0:.1f} images/s) with "
          f"{classifier.describe()}; {len(failures)} failed", file=sys.stderr)
    for failure in failures:
        print(f"  failed: {failure}", file=sys.stderr)
    return 1 if failures else 0
