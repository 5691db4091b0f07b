"""What a board may say back, checked before anything of it is kept.

A board (or anything answering as the agent over SSH) is not trusted: its lines are bounded in length and number,
parsed with bounded nesting, and each message must have the shape the agent writes. A bench row keeps only the
measured figures it sends (finite, non-negative numbers and short strings); everything that names the case (id,
artifact, path, format) comes from the host's own case. Anything else is TargetMisbehaved: one line naming the
target, exit 2, and nothing it sent is written.
"""

from __future__ import annotations

import math
import re

from edgeship.runtime.fileio import loads_json

from .ssh import TargetMisbehaved

MAX_LINE_BYTES = 8 << 20  # one probability message of 256 images x 1,000 classes is about 1.4 MB
MAX_TEXT = 300
_SHA256 = re.compile(r"[0-9a-f]{64}")
STATUSES = ("ok", "failed", "unavailable")
MEASURED_NUMBERS = ("throughput_ips", "load_ms", "first_inference_ms", "peak_rss_mb")
LATENCY_KEY = re.compile(r"p\d{1,2}(\.\d+)?|mean|std|min|max|cv")  # the harness's summary (harness.summarize)


def parse_line(line: bytes, label: str):
    """A JSON message of the agent, or None for a line that is not JSON (a library's chatter)."""
    if len(line) >= MAX_LINE_BYTES:
        raise TargetMisbehaved(f"{label}: sent a line of {len(line)} bytes or more (at most {MAX_LINE_BYTES})")
    try:
        return loads_json(line, label, ValueError)
    except ValueError as exc:
        if "nested more than" in str(exc):
            raise TargetMisbehaved(f"{label}: sent JSON nested too deep") from None
        return None


def _text(value, what: str, label: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise TargetMisbehaved(f"{label}: {what} is not a short string")
    return value


def _number(value, what: str, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise TargetMisbehaved(f"{label}: {what} is not a finite, non-negative number")
    return value


def check_environment(environment, label: str) -> dict:
    """The board's fingerprint: a flat object of short strings, numbers, booleans, lists of short strings, and one
    level of library versions."""
    if not isinstance(environment, dict) or len(environment) > 64:
        raise TargetMisbehaved(f"{label}: its environment is not an object of at most 64 entries")
    for key, value in environment.items():
        _text(key, "an environment key", label, 64)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            _number(value, f"environment {key}", label)
        elif isinstance(value, str):
            _text(value, f"environment {key}", label, 1000)
        elif isinstance(value, list) and len(value) <= 500:
            for item in value:
                _text(item, f"an item of environment {key}", label, 64)
        elif isinstance(value, dict) and len(value) <= 100:
            for name, version in value.items():
                _text(name, f"a key of environment {key}", label, 64)
                _text(version, f"environment {key}.{name}", label, 64)
        else:
            raise TargetMisbehaved(f"{label}: environment {key} is not a string, number or short list")
    return environment


def check_shipped(artifacts, names, label: str) -> dict:
    """{artifact: {sha256, runtime}} for exactly the artifacts sent."""
    if not isinstance(artifacts, dict) or set(artifacts) != set(names):
        raise TargetMisbehaved(f"{label}: its header does not list exactly the artifacts sent")
    for name, entry in artifacts.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not _SHA256.fullmatch(entry["sha256"]):
            raise TargetMisbehaved(f"{label}: {name}: no sha256 of the file it ran")
        if entry.get("runtime") is not None:
            _text(entry["runtime"], f"{name}'s runtime", label, 200)
    return artifacts


def measured_row(answer, case: dict, label: str) -> dict:
    """A bench row from the host's CASE and what the board measured: only figures are taken from ANSWER."""
    if not isinstance(answer, dict):
        raise TargetMisbehaved(f"{label}: a result row is not an object")
    status = answer.get("status")
    if status not in STATUSES:
        raise TargetMisbehaved(f"{label}: a result row has status {str(status)[:20]!r}")
    row = {k: case.get(k) for k in ("id", "model", "name", "path", "backend", "provider", "threads", "batch",
                                    "format", "precision", "size_bytes", "kind")}
    row["status"] = status
    if answer.get("error") is not None:
        row["error"] = _text(answer["error"], "an error", label, 1000)
    if answer.get("runtime") is not None:
        row["runtime"] = _text(answer["runtime"], "a runtime", label, 200)
    for key in MEASURED_NUMBERS:
        if answer.get(key) is not None:
            row[key] = _number(answer[key], key, label)
    if answer.get("runs") is not None:
        if isinstance(answer["runs"], bool) or not isinstance(answer["runs"], int) or answer["runs"] < 0:
            raise TargetMisbehaved(f"{label}: runs is not a whole number")
        row["runs"] = answer["runs"]
    latency = answer.get("latency_ms")
    if latency is not None:
        if not isinstance(latency, dict) or "p50" not in latency or len(latency) > 20 \
                or not all(isinstance(k, str) and LATENCY_KEY.fullmatch(k) for k in latency):
            raise TargetMisbehaved(f"{label}: latency_ms is not the agent's percentiles")
        row["latency_ms"] = {k: None if k == "cv" and v is None else _number(v, f"latency_ms {k}", label)
                             for k, v in latency.items()}
    if status == "ok" and "latency_ms" not in row and case.get("kind") != "profile":
        raise TargetMisbehaved(f"{label}: a row says ok without a latency")
    return row
