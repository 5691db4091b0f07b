"""Frames from a video file or a camera, as RGB arrays, through OpenCV when it is installed."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .errors import UsageError


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise UsageError("--video needs OpenCV: pip install opencv-python-headless (or edgeship[video])") from exc
    return cv2


def video_frames(source: str, every: int = 1, max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, HWC uint8 RGB frame). SOURCE is a file path or a camera index such as 0."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(int(source) if str(source).isdigit() else str(source))
    if not capture.isOpened():
        raise UsageError(f"{source}: cannot open this video file or camera")
    index = emitted = 0
    try:
        while max_frames is None or emitted < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                emitted += 1
                yield index, np.ascontiguousarray(frame[..., ::-1])  # OpenCV decodes to BGR
            index += 1
    finally:
        capture.release()
