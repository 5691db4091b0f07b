"""Run bench/probe.py in a fresh interpreter: cold start (import + load + first prediction) and peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edgeship.runtime.errors import EdgeshipError


def measure_cold_start(model: str | Path, import_tensorflow: bool = False, python: str = sys.executable,
                       timeout: float = 300) -> dict:
    command = [python, str(Path(__file__).with_name("probe.py")), str(model)] + (["--import-tensorflow"] if import_tensorflow else [])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeshipError(f"{model}: cold-start probe failed ({tail})")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["process_wall_s"] = wall
    return figures
