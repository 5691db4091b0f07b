"""Measurements kept across sweeps: what an untrained architecture costs in one format on one target does not
change until the architecture, the number of classes, the thread count or the runtimes do.

The cache is one Optuna study (`edgeship/measure-cache`) in the sweep's storage, its user attributes keyed by
architecture's cost key (backbone, input size, width: weights and fine-tuned layers change no cost) + classes +
format + target + threads + runs + runtime versions. Candidates that differ only in weights are measured once, and a
second sweep over an overlapping space (the same --storage) converts and benches only what it has not seen. Tests that inject timings
(`SweepOptions.bench`) never read or write it: injected figures are not measurements.
"""

from __future__ import annotations

import json
from typing import Sequence

from .measure import FormatCost

CACHE_STUDY = "edgeship/measure-cache"


def runtime_versions() -> str:
    """This host's interpreters, as the key's last part: a new LiteRT or ONNX Runtime measures again."""
    from edgeship.runtime.backends import BACKENDS

    return ",".join(f"{name}={BACKENDS[name].probe() or '-'}" for name in ("tflite", "onnxruntime"))


class MeasureCache:
    def __init__(self, storage, n_classes: int, threads: int, runs: int):
        import optuna

        self.study = optuna.create_study(storage=storage, study_name=CACHE_STUDY, load_if_exists=True)
        self.suffix = f"c{n_classes}|t{threads}|r{runs}|{runtime_versions()}"

    def _key(self, arch_key: str, fmt: str, target: str) -> str:
        return f"{arch_key}|{fmt}|{target}|{self.suffix}"

    def lookup(self, arch_key: str, formats: Sequence[str], targets: Sequence[str]) -> dict[str, FormatCost] | None:
        """Every format's cost on every target from earlier sweeps, or None when any is missing."""
        attrs = self.study.user_attrs
        costs = {}
        for fmt in formats:
            entries = [attrs.get(self._key(arch_key, fmt, t)) for t in targets]
            if any(e is None for e in entries):
                return None
            cost = FormatCost.from_json({**json.loads(entries[0]), "latency_ms": {}, "emulated": {}})
            for target, entry in zip(targets, entries):
                figures = json.loads(entry)
                cost.latency_ms[target] = figures["latency_ms"].get(target)
                cost.emulated[target] = figures["emulated"].get(target, False)
            costs[fmt] = cost
        return costs

    def store(self, arch_key: str, costs: dict[str, FormatCost], targets: Sequence[str]) -> None:
        """Each measured (format, target); a format that failed to convert or a target that gave no figure is not
        kept (it is tried again next time)."""
        for fmt, cost in costs.items():
            if cost.error is not None:
                continue
            for target in targets:
                if cost.latency_ms.get(target) is None:
                    continue
                entry = {**cost.to_json(), "latency_ms": {target: cost.latency_ms[target]},
                         "emulated": {target: cost.emulated.get(target, False)}}
                self.study.set_user_attr(self._key(arch_key, fmt, target), json.dumps(entry))
