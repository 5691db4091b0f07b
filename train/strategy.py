"""`--strategy`: where training runs, via tf.distribute (a registry, not an if-chain).

`mirrored` copies the model onto every local GPU (or the CPU when there is none) and averages gradients;
`multi-worker` does the same across machines listed in the standard `TF_CONFIG` environment variable.
The model and its optimizer must be built inside `strategy.scope()`.

Keras 3 (3.15 measured) cannot `fit` under MultiWorkerMirroredStrategy out of the box (keras-team/keras#20585):
it reduces the first input batch, a nest of PerReplica values, through a collective that takes one value, and
it averages the per-replica loss and metric scalars with `axis=0`, which a scalar has not. `multi_worker_fit`
patches those two steps for multi-worker strategies only, and computes BatchNorm statistics over the global
batch; the two-worker test checks that both workers end with identical weights.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

from edgeship.core.tfenv import import_keras
from edgeship.runtime.errors import UsageError

from .backbones import leaf_layers


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in a TF_CONFIG cluster. The chief alone writes the run directory."""

    task_type: str
    index: int
    workers: int
    _has_chief: bool = False  # with a `chief` task in the cluster, worker 0 is an ordinary worker

    @property
    def chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0 and not self._has_chief)

    def describe(self) -> str:
        return f"{self.task_type} {self.index} of {self.workers} worker(s)"


def worker_role(strategy_name: str | None) -> WorkerRole:
    """The role TF_CONFIG gives this process (a lone chief when not multi-worker or TF_CONFIG is unset)."""
    if strategy_name != "multi-worker" or not os.environ.get("TF_CONFIG"):
        return WorkerRole("chief", 0, 1)
    config = _tf_config()
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    if not isinstance(cluster, dict) or not isinstance(task, dict) or "type" not in task:
        raise UsageError("TF_CONFIG needs a 'cluster' and a 'task' with a 'type' and an 'index'; see tf.distribute's "
                         "multi-worker guide")
    workers = sum(len(cluster.get(kind) or []) for kind in ("chief", "worker"))
    return WorkerRole(str(task["type"]), int(task.get("index", 0)), workers, _has_chief=bool(cluster.get("chief")))


def _tf_config() -> dict:
    try:
        config = json.loads(os.environ["TF_CONFIG"])
    except json.JSONDecodeError as exc:
        raise UsageError(f"TF_CONFIG is not valid JSON ({exc}); see tf.distribute's multi-worker guide") from exc
    if not isinstance(config, dict):
        raise UsageError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return config


def _default(tf):
    return None


def _mirrored(tf):
    return tf.distribute.MirroredStrategy()


def _multi_worker(tf):
    if os.environ.get("TF_CONFIG"):
        _tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()


STRATEGIES = {"default": _default, "mirrored": _mirrored, "multi-worker": _multi_worker}  # core.limits names the last two for the CLI


def make_strategy(name: str | None):
    """The tf.distribute strategy for NAME (None / 'default': TensorFlow's default placement)."""
    key = name or "default"
    if key not in STRATEGIES:
        raise UsageError(f"unknown --strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    tf, _ = import_keras()
    return STRATEGIES[key](tf)


def scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _is_multi_worker(strategy) -> bool:
    tf, _ = import_keras()
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def multi_worker_fit(model, strategy) -> None:
    """Make MODEL trainable with `fit` under a multi-worker strategy (no-op for any other strategy)."""
    if strategy is None or not _is_multi_worker(strategy):
        return
    tf, _ = import_keras()
    _patch_logs_reduction(tf)

    def local_value(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def symbolic_build(iterator=None, data_batch=None):  # shapes only: this replica's part of the batch will do
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(local_value, next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = symbolic_build
    set_synchronized_batchnorm(model, True)


def set_synchronized_batchnorm(model, synchronized: bool) -> None:
    """BatchNorm over the global batch: without it each worker's moving statistics see only its own shard,
    so the workers' models (and so the chief's bundle) differ. Switched off again before saving, so the
    bundle's model is an ordinary single-device one."""
    _, keras = import_keras()
    for layer in leaf_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = synchronized


def _patch_logs_reduction(tf) -> None:
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    original = keras_tf_trainer.reduce_per_replica
    if getattr(original, "edgeship_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and keras_tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None) if isinstance(v, tf.distribute.DistributedValues)
                else v, values)
        return original(values, strategy, reduction)

    reduce_per_replica.edgeship_patched = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica
