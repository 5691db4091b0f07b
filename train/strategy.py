"""`--strategy`: where training runs, via tf.distribute (a registry, not an if-chain).

`mirrored` copies the model onto every local GPU (or the CPU when there is none) and averages gradients;
`multi-worker` does the same across machines listed in the standard `TF_CONFIG` environment variable.
The model and its optimizer must be built inside `strategy.scope()`.
"""

from __future__ import annotations

import contextlib
import json
import os

from edgeship.core.tfenv import import_keras
from edgeship.runtime.errors import UsageError


def _default(tf):
    return None


def _mirrored(tf):
    return tf.distribute.MirroredStrategy()


def _multi_worker(tf):
    config = os.environ.get("TF_CONFIG")
    if config:
        try:
            json.loads(config)
        except json.JSONDecodeError as exc:
            raise UsageError(f"TF_CONFIG is not valid JSON ({exc}); see tf.distribute's multi-worker guide") from exc
    return tf.distribute.MultiWorkerMirroredStrategy()


STRATEGIES = {"default": _default, "mirrored": _mirrored, "multi-worker": _multi_worker}


def make_strategy(name: str | None):
    """The tf.distribute strategy for NAME (None / 'default': TensorFlow's default placement)."""
    key = name or "default"
    if key not in STRATEGIES:
        raise UsageError(f"unknown --strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    tf, _ = import_keras()
    return STRATEGIES[key](tf)


def scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def replicas(strategy) -> int:
    return strategy.num_replicas_in_sync if strategy is not None else 1
