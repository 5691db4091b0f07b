"""Load each model file named on the command line and run one prediction; print one verdict per file.

Run in a subprocess by test_runtime_fuzz.py so that a crash (segfault, abort) is counted, not fatal.
"""

import sys

import numpy as np
from edgeship.runtime import Classifier, ModelLoadError

for path in sys.argv[1:]:
    print(f"START {path}", flush=True)
    try:
        classifier = Classifier.load(path)
        spec = classifier.info.input
        classifier.predict_proba(np.zeros((1, spec.height, spec.width, 3), np.uint8))
        verdict = "loaded"
    except ModelLoadError:
        verdict = "rejected"
    except Exception as exc:  # anything else escaping the loader is a bug: report its type
        verdict = f"escaped {type(exc).__name__}"
    print(f"DONE {verdict}", flush=True)
