"""Where things live in a run directory, so every command accepts either the run or its bundle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .spec import MANIFEST_NAME

BUNDLE_DIR = "bundle"
TRAINING_DIR = "training"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


@dataclass(frozen=True)
class RunLayout:
    """RUN/bundle (the model bundle), RUN/training (logs, curves) and RUN/report.{json,md}."""

    root: Path

    @property
    def bundle(self) -> Path:
        return self.root / BUNDLE_DIR

    @property
    def training(self) -> Path:
        return self.root / TRAINING_DIR

    @property
    def report_json(self) -> Path:
        return self.root / REPORT_JSON

    @property
    def report_md(self) -> Path:
        return self.root / REPORT_MD

    @classmethod
    def find(cls, path: str | Path) -> "RunLayout":
        """Accept a run directory, its bundle directory or its report.json."""
        path = Path(path)
        if path.is_file() and path.name == REPORT_JSON:
            path = path.parent
        if (path / BUNDLE_DIR / MANIFEST_NAME).is_file():
            return cls(path)
        if (path / MANIFEST_NAME).is_file() and path.name == BUNDLE_DIR:
            return cls(path.parent)
        if not path.exists():
            raise UsageError(f"{path}: no such run directory")
        raise UsageError(f"{path}: not an edgeship run (expected {BUNDLE_DIR}/{MANIFEST_NAME}); run `edgeship train` first")
