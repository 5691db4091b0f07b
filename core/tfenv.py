"""Import TensorFlow/Keras quietly, and silence converters that print to stdout/stderr.

TensorFlow's C++ logging and Keras' export messages bury the lines users care about; we keep them in a
buffer and show its tail only when something fails.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def import_keras():
    """Return (tf, keras) with TensorFlow's logs turned down (its C++ start-up lines included)."""
    if "tensorflow" not in sys.modules:
        with captured_output():
            import tensorflow  # noqa: F401 - deliberately lazy: predict must never pay for this
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    return tf, keras


class CapturedOutput:
    def __init__(self):
        self.text = ""

    def tail(self, lines: int = 5) -> str:
        kept = [line for line in self.text.strip().splitlines() if line.strip()]
        return " | ".join(kept[-lines:])


@contextlib.contextmanager
def captured_output():
    """Send Python and C-level stdout/stderr to a buffer for the duration of the block."""
    captured = CapturedOutput()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        python_buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(python_buffer), contextlib.redirect_stderr(python_buffer):
                yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured.text = python_buffer.getvalue() + sink.read().decode("utf-8", "replace")
