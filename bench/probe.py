"""Cold start and peak memory of one artifact, measured in a fresh process.

`python probe.py MODEL [--import-tensorflow]` (run as a file, so no package __init__ runs first) imports the runtime, loads MODEL, runs one
prediction and prints JSON: seconds for each step and the process's peak RSS. The parent (coldstart.py)
also times the whole process, interpreter start-up included.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    with_tensorflow = "--import-tensorflow" in args
    model = [a for a in args if not a.startswith("--")][0]
    started = time.perf_counter()
    if with_tensorflow:
        import tensorflow  # noqa: F401 - the comparison: a process that carries TensorFlow
    from edgeship.runtime import Classifier

    imported = time.perf_counter()
    classifier = Classifier.load(model)
    loaded = time.perf_counter()
    spec = classifier.info.input
    import numpy as np

    classifier.predict(np.zeros((spec.height, spec.width, 3), np.uint8))
    first = time.perf_counter()
    from edgeship.runtime.environment import peak_rss_mb  # after the timed part: it costs nothing there

    print(json.dumps({
        "import_s": imported - started, "load_s": loaded - imported, "first_inference_s": first - loaded,
        "cold_start_s": first - started, "peak_rss_mb": peak_rss_mb(), "runtime": classifier.session.implementation,
        "tensorflow_imported": "tensorflow" in sys.modules,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
