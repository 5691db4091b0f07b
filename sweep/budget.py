"""The device's budget, as people say it ("20ms", "4MB", "1" pp), and the one place it is judged.

Latency is judged on the p50 of every target that is not emulated: a QEMU user-mode board runs the right code at
the wrong speed (bench marks its rows `emulated`), so its timings are shown and never decide.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from edgeship.runtime.errors import UsageError

_TIME = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
_SIZE = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000 ** 2, "mib": 1024 ** 2, "gb": 1000 ** 3, "gib": 1024 ** 3}


def _number_with_unit(text: str, units: dict, default: str, flag: str) -> float:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = (match.group(2).lower() or default) if match else None
    if not match or unit not in units or float(match.group(1)) <= 0:
        raise UsageError(f"{flag} {text}: expected a positive number with a unit ({', '.join(units)}), e.g. "
                         f"{flag} 20{default}")
    return float(match.group(1)) * units[unit]


def parse_latency(text: str, flag: str = "--max-latency") -> float:
    """Milliseconds: '20ms', '0.5 ms', '800us', '20' (ms)."""
    return _number_with_unit(text, _TIME, "ms", flag)


def parse_size(text: str, flag: str = "--max-size") -> int:
    """Bytes: '4MB' (10^6), '4MiB' (2^20), '500KB', '123456' (bytes)."""
    return int(_number_with_unit(text, _SIZE, "b", flag))


@dataclass(frozen=True)
class Budget:
    max_latency_ms: float | None = None  # p50 at batch 1 on every real target
    max_size_bytes: int | None = None  # the artifact file
    max_drop_pp: float = 1.0  # accuracy lost to conversion on the validation split, percentage points
    max_arena_bytes: int | None = None  # TensorFlow Lite Micro's tensor arena, allocated in its interpreter
    max_flash_bytes: int | None = None  # the file plus TFLM's code allowance
    npu: str | None = None  # an Ethos-U configuration Vela compiles every candidate for (ethos-u55-128)
    max_npu_ms: float | None = None  # Vela's estimated time on NPU at its default clock

    def __post_init__(self):
        if not (self.max_drop_pp >= 0):
            raise UsageError(f"--max-drop must be >= 0 percentage points, got {self.max_drop_pp}")
        if self.max_npu_ms is not None and self.npu is None:
            raise UsageError("--max-npu-ms needs --npu CONFIG: the Ethos-U configuration Vela estimates it for")

    @property
    def micro(self) -> bool:
        """Whether a microcontroller's figures (TFLM's arena and flash) decide."""
        return self.max_arena_bytes is not None or self.max_flash_bytes is not None

    def cost_problems(self, size_bytes: int | None, latency_ms: dict[str, float | None],
                      emulated: dict[str, bool], micro: dict | None = None) -> list[str]:
        """Why a candidate's cost is over budget (empty: within it), from figures that need no training. MICRO:
        arena_bytes, flash_bytes and npu_ms where they were measured."""
        problems = self._micro_problems(micro or {})
        if self.max_size_bytes is not None and (size_bytes is None or size_bytes > self.max_size_bytes):
            problems.append(f"size {_mb(size_bytes)} > {_mb(self.max_size_bytes)}")
        if self.max_latency_ms is not None:
            for target, ms in latency_ms.items():
                if emulated.get(target):
                    continue
                if ms is None:
                    problems.append(f"no latency on {target}")
                elif ms > self.max_latency_ms:
                    problems.append(f"p50 {ms:.3g} ms > {self.max_latency_ms:g} ms on {target}")
        return problems

    def _micro_problems(self, micro: dict) -> list[str]:
        problems = []
        for limit, key, what in ((self.max_arena_bytes, "arena_bytes", "TFLM arena"),
                                 (self.max_flash_bytes, "flash_bytes", "flash")):
            value = micro.get(key)
            if limit is not None and value is None:
                problems.append(f"no {what} figure")
            elif limit is not None and value > limit:
                problems.append(f"{what} {_mb(value)} > {_mb(limit)}")
        npu_ms = micro.get("npu_ms")
        if self.max_npu_ms is not None and npu_ms is None:
            problems.append(f"no Vela estimate for {self.npu}")
        elif self.max_npu_ms is not None and npu_ms > self.max_npu_ms:
            problems.append(f"{self.npu} est. {npu_ms:.3g} ms > {self.max_npu_ms:g} ms")
        return problems

    def drop_problem(self, drop_pp: float | None) -> str | None:
        if drop_pp is None:
            return "no validation figure"
        return f"val drop {drop_pp:+.2f} pp > {self.max_drop_pp:g} pp" if drop_pp > self.max_drop_pp else None

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = [f"p50 <= {self.max_latency_ms:g} ms" if self.max_latency_ms is not None else None,
                 f"size <= {_mb(self.max_size_bytes)}" if self.max_size_bytes is not None else None,
                 f"TFLM arena <= {_mb(self.max_arena_bytes)}" if self.max_arena_bytes is not None else None,
                 f"flash <= {_mb(self.max_flash_bytes)}" if self.max_flash_bytes is not None else None,
                 f"{self.npu} est. <= {self.max_npu_ms:g} ms" if self.max_npu_ms is not None else None,
                 f"drop <= {self.max_drop_pp:g} pp"]
        return ", ".join(p for p in parts if p)


def _mb(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1e6:.3g} MB" if size >= 100_000 else f"{size / 1e3:.3g} kB"
