"""Keep LiteRT's start-up chatter off the console without hiding its real errors.

LiteRT's C++ code writes `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.` to file descriptor 2 when
the first interpreter of a process allocates its tensors: it was the first line of every `edgeship predict`.
Python cannot filter a C library's writes, so the block runs with descriptor 2 pointed at a temporary file,
and afterwards every line that is not known chatter is written to the real stderr.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading

CHATTER = (
    re.compile(r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."),
    re.compile(r"INFO: Initialized TensorFlow Lite runtime\."),
)
_redirecting = threading.RLock()  # descriptor 2 is the process's: one redirection at a time


def is_chatter(line: str) -> bool:
    return any(pattern.fullmatch(line.strip()) for pattern in CHATTER)


class Captured:
    """What a C library wrote to a descriptor while `captured_native` ran (text, after the block ends)."""

    text = ""


@contextlib.contextmanager
def quiet_native_stderr():
    """Run the block with C-level stderr captured; pass on everything but LiteRT's known INFO lines."""
    captured = Captured()
    try:
        with captured_native(2) as captured:
            yield
    finally:  # a failing load's own words are passed on too
        kept = [line for line in captured.text.splitlines(keepends=True) if line.strip() and not is_chatter(line)]
        if kept:
            os.write(2, "".join(kept).encode("utf-8"))


@contextlib.contextmanager
def captured_native(fd: int):
    """Run the block with descriptor FD (1 or 2) pointed at a temporary file and hand its text back, written nowhere
    else: TFLM prints its arena figures and its reasons for refusing a model to stderr."""
    captured = Captured()
    with _redirecting:
        stream = sys.stdout if fd == 1 else sys.stderr
        try:
            stream.flush()
            saved = os.dup(fd)
        except (OSError, ValueError, AttributeError):
            yield captured
            return
        with tempfile.TemporaryFile(mode="w+b") as sink:
            os.dup2(sink.fileno(), fd)
            try:
                yield captured
            finally:
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
                _flush_c_streams()  # C's stdio buffers what it prints: flushed into the file, not after it
                os.dup2(saved, fd)
                os.close(saved)
                sink.seek(0)
                captured.text = sink.read().decode("utf-8", "replace")


def _flush_c_streams() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to ask (not a POSIX system): nothing buffered we could reach
        pass
