"""The split manifest: train / val / calib / test, disjoint, stratified, reproducible from a seed.

calib is carved from the training pool (never from test), so int8 calibration never sees an image the
parity report is measured on. The manifest is a CSV `path,label,split` with paths relative to the CSV.
"""

from __future__ import annotations

import csv
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgeship.runtime.fileio import atomic_write_bytes, sha256_bytes

from .dataset import ScannedDataset
from .errors import DatasetError

SPLITS = ("train", "val", "calib", "test")
HEADER = ["path", "label", "split"]
MIN_PER_CLASS = 4


@dataclass(frozen=True)
class SplitConfig:
    val: float = 0.1
    test: float = 0.2
    calib: float = 0.1  # fraction of the training pool
    calib_max: int = 300  # across all classes
    seed: int = 0
    max_per_class: int | None = None  # keep at most this many images per class (a random, seeded subset)

    def __post_init__(self):
        if not (0 < self.test < 1 and 0 <= self.val < 1 and self.val + self.test < 1 and 0 <= self.calib < 1):
            raise DatasetError(f"split fractions do not fit: val={self.val}, test={self.test}, calib={self.calib}")


@dataclass(frozen=True)
class SplitRow:
    path: Path
    label: str
    split: str


@dataclass
class SplitManifest:
    rows: list[SplitRow]

    def select(self, split: str) -> list[SplitRow]:
        return [row for row in self.rows if row.split == split]

    def paths_and_indices(self, split: str, labels: tuple[str, ...]) -> tuple[list[Path], np.ndarray]:
        index = {label: i for i, label in enumerate(labels)}
        rows = self.select(split)
        _check_reachable(rows, split)
        unknown = sorted({row.label for row in rows} - set(index))
        if unknown:
            raise DatasetError(f"split manifest has labels the model does not know: {', '.join(unknown)}")
        return [row.path for row in rows], np.array([index[row.label] for row in rows], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        return {split: len(self.select(split)) for split in SPLITS}

    def to_csv_bytes(self, base: Path) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(HEADER)
        for row in self.rows:
            writer.writerow([portable_path(row.path, base), row.label, row.split])
        return buffer.getvalue().encode("utf-8")

    def write(self, csv_path: str | Path) -> str:
        """Write atomically; return the sha256 of the bytes written (the bundle records it)."""
        csv_path = Path(csv_path)
        data = self.to_csv_bytes(csv_path.parent.resolve())
        atomic_write_bytes(csv_path, data)
        return sha256_bytes(data)

    @classmethod
    def read(cls, csv_path: str | Path) -> "SplitManifest":
        csv_path = Path(csv_path)
        try:
            text = csv_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DatasetError(f"{csv_path}: cannot read split manifest ({exc.strerror or exc})") from exc
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header != HEADER:
            raise DatasetError(f"{csv_path}: split manifest header must be {','.join(HEADER)}, got {header}")
        rows = []
        for line_no, record in enumerate(reader, start=2):
            if len(record) != 3 or record[2] not in SPLITS:
                raise DatasetError(f"{csv_path}:{line_no}: expected path,label,split with split in {SPLITS}")
            path = Path(record[0])
            rows.append(SplitRow(path if path.is_absolute() else (csv_path.parent / path).resolve(), record[1], record[2]))
        return cls(rows)


def _check_reachable(rows: list[SplitRow], split: str, sample: int = 3) -> None:
    """One line naming the cause when none of a split's first images exists: the manifest's paths are relative to
    the bundle, so a run copied to a folder at another depth than its data finds nothing, and each image's own
    "no such file" would not say why."""
    if not rows or any(row.path.exists() for row in rows[:sample]):
        return
    raise DatasetError(f"{rows[0].path}: no such file, nor the next {min(sample, len(rows)) - 1} {split} image(s) of "
                       f"the split manifest, whose paths are relative to the bundle: was the run moved or copied away "
                       f"from its images? Put it back at the same place relative to them, or train again")


def stratified_indices(labels, count: int) -> np.ndarray:
    """At most COUNT indices into LABELS taking every class in turn (round-robin, each class in its given
    order), so a prefix of any length is spread over the classes: calibration and diagnosis images drawn from
    a class-sorted manifest. Deterministic; the indices come back sorted."""
    labels = np.asarray(labels)
    queues = [np.flatnonzero(labels == label) for label in dict.fromkeys(labels.tolist())]
    depth = max((len(q) for q in queues), default=0)
    order = [q[i] for i in range(depth) for q in queues if i < len(q)]
    return np.sort(np.asarray(order[:max(0, count)], dtype=int))


def portable_path(path: Path, base: Path) -> str:
    """PATH relative to BASE with forward slashes; absolute when no relative path exists (another drive)."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), base)).as_posix()
    except ValueError:  # another drive on Windows
        return Path(path).resolve().as_posix()


def _class_rng(seed: int, label: str) -> np.random.Generator:
    # Per-class stream: adding images to one class does not reshuffle the others.
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def _subset(paths: list[Path], limit: int | None, rng: np.random.Generator) -> list[Path]:
    """Shuffle deterministically (paths sorted first, so the file system's order never matters), then cap."""
    ordered = sorted(paths, key=str)
    order = [ordered[i] for i in rng.permutation(len(ordered))]
    return order[:limit] if limit else order


def make_splits(dataset: ScannedDataset, config: SplitConfig = SplitConfig(),
                fixed_test: set[Path] | None = None) -> SplitManifest:
    """Stratified train/val/calib/test. `fixed_test`: images that *are* the test split (e.g. Food-101's
    official test list); val and calib then come from the rest, with `val` a fraction of the rest."""
    by_class: dict[str, list[Path]] = {name: [] for name in dataset.classes}
    for sample in dataset.samples:
        by_class[sample.label].append(sample.path)
    calib_per_class = int(np.ceil(config.calib_max / len(by_class)))
    rows: list[SplitRow] = []
    for label, paths in by_class.items():
        rng = _class_rng(config.seed, label)
        if fixed_test is None:
            order = _subset(paths, config.max_per_class, rng)
            n_test = max(1, round(len(order) * config.test)) if len(order) >= MIN_PER_CLASS else 0
            test, rest = order[:n_test], order[n_test:]
        else:
            pool = _subset([p for p in paths if p not in fixed_test], config.max_per_class, rng)
            listed = [p for p in paths if p in fixed_test]
            cap = None if not config.max_per_class else max(1, round(len(listed) * len(pool) / max(1, len(paths) - len(listed))))
            test, rest = _subset(listed, cap, rng), pool
        if not test or len(rest) < MIN_PER_CLASS - 1:
            raise DatasetError(
                f"class {label!r} has {len(test) + len(rest)} usable image(s) ({len(test)} for test); at least "
                f"{MIN_PER_CLASS} are needed to give train, val, calib and test one each"
            )
        n_val = max(1, round((len(rest) + (len(test) if fixed_test is None else 0)) * config.val)) if config.val > 0 else 0
        n_val = min(n_val, len(rest) - 2)
        pool_size = len(rest) - n_val
        n_calib = min(max(1, round(pool_size * config.calib)) if config.calib > 0 else 0, calib_per_class, pool_size - 1)
        rows.extend(SplitRow(p, label, "test") for p in test)
        start = 0
        for split, count in (("val", n_val), ("calib", n_calib), ("train", pool_size - n_calib)):
            rows.extend(SplitRow(p, label, split) for p in rest[start : start + count])
            start += count
    rows.sort(key=lambda r: (SPLITS.index(r.split), r.label, str(r.path)))
    return SplitManifest(rows)
