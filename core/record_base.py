"""The base of every typed record: `to_json`/`from_json` at the file boundary, unknown keys kept in `extra`, and the
composition of a row from the records its stages write (`merge`, `part`)."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timezone
from typing import Any, ClassVar

class _Record:
    """to_json/from_json for a dataclass with an `extra` dict (None values are left out). NESTED names the
    fields that hold another record (a JSON object), LISTS those that hold a list of records."""

    NESTED: ClassVar[dict[str, type]] = {}
    LISTS: ClassVar[dict[str, type]] = {}
    KEEP_NONE: ClassVar[tuple[str, ...]] = ()  # written as null: None means something ("threads": the default)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**self.extra, **{k: _plain(v) for k, v in data.items() if v is not None or k in self.KEEP_NONE}}

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: cls._typed(k, v) for k, v in data.items() if k in known}
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def merge(self, part: "_Record") -> None:
        """Take the figures of PART, a stage record this row is composed of (a ParityRow of its ParityStage, ...):
        each stage writes its own record, and the row holds them side by side."""
        if not isinstance(self, type(part)):
            raise TypeError(f"{type(self).__name__} is not composed of a {type(part).__name__}")
        for f in fields(part):
            if f.name != "extra":
                setattr(self, f.name, getattr(part, f.name))

    def part(self, stage: type) -> "_Record":
        """This row's record of one STAGE (a ParityRow's LatencyStage, ...), as that stage wrote it."""
        if not isinstance(self, stage):
            raise TypeError(f"{type(self).__name__} is not composed of a {stage.__name__}")
        return stage(**{f.name: getattr(self, f.name) for f in fields(stage) if f.name != "extra"})

    @classmethod
    def _typed(cls, name: str, value):
        """A field's JSON value as its record type (a nested record, or a list of them); others as they are."""
        if name in cls.NESTED and isinstance(value, dict):
            return cls.NESTED[name].from_json(value)
        if name in cls.LISTS and isinstance(value, list):
            return [cls.LISTS[name].from_json(v) if isinstance(v, dict) else v for v in value]
        return value


def _plain(value):
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")



