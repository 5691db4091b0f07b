"""Scan a folder of class sub-folders; skip and count images that cannot be decoded."""

from __future__ import annotations

import logging
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from edgeship.runtime.errors import ImageError
from edgeship.runtime.preprocess import IMAGE_SUFFIXES, load_image
from edgeship.runtime.progress import progress

from .errors import DatasetError

logger = logging.getLogger("edgeship")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass
class ScannedDataset:
    root: Path
    classes: tuple[str, ...]
    samples: list[Sample]
    skipped: list[SkippedFile] = field(default_factory=list)
    excluded_folders: tuple[str, ...] = ()  # class folders present but not chosen (--classes / classes.txt)

    def counts(self) -> dict[str, int]:
        counts = {name: 0 for name in self.classes}
        for sample in self.samples:
            counts[sample.label] += 1
        return counts

    def summary(self, max_listed: int = 50) -> dict:
        return {
            "root": str(self.root),
            "n_images": len(self.samples),
            "n_classes": len(self.classes),
            "per_class": self.counts(),
            "n_skipped": len(self.skipped),
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped[:max_listed]],
            "excluded_folders": list(self.excluded_folders),
        }


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _check(path: Path) -> str | None:
    """None when the image decodes, else the reason it does not."""
    try:
        load_image(path)
    except ImageError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


CLASS_LIST_FILE = "classes.txt"


def natural_key(name: str):
    """'class2' sorts before 'class10'."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name) if part]


def read_class_list(root: Path) -> list[str] | None:
    """ROOT/classes.txt, one class per line, fixes label order (and picks a subset) when present."""
    path = root / CLASS_LIST_FILE
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    check_class_names(names, str(path))
    return names


def printable_path(path: Path | str) -> str:
    """PATH as text that always encodes: undecodable bytes in a file name become \\xNN escapes."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_class_names(names: Sequence[str], source: str) -> None:
    """Class names become labels.txt lines, CSV cells and metadata: refuse duplicates, control characters
    (a newline would add a label) and bytes that are not UTF-8."""
    twice = sorted({n for n in names if list(names).count(n) > 1})
    if twice:
        raise DatasetError(f"{source}: lists class(es) {', '.join(map(repr, twice))} more than once; name each "
                           f"class once")
    for name in names:
        if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
            raise DatasetError(f"{source}: class name {printable_path(name)!r} contains a control character or "
                               f"bytes that are not UTF-8; rename the folder")


def _class_folders(root: Path, classes: Sequence[str] | None) -> tuple[list[Path], tuple[str, ...]]:
    """(the chosen class folders in label order, the folders left out)."""
    found = {p.name: p for p in sorted(root.iterdir(), key=lambda p: natural_key(p.name))
             if p.is_dir() and not p.name.startswith(".")}
    from_file = not classes
    classes = classes or read_class_list(root)
    if classes:
        check_class_names(classes, "--classes" if not from_file else str(root / CLASS_LIST_FILE))
        missing = [name for name in classes if name not in found]
        if missing:
            raise DatasetError(f"{root}: no class folder for {', '.join(missing)} (found: {', '.join(found) or 'none'})")
        left_out = tuple(name for name in found if name not in classes)
        if left_out and from_file:
            logger.warning(f"{root / CLASS_LIST_FILE} leaves out class folder(s) {', '.join(left_out)}: their "
                           f"images are not used (list them there, or pass --classes, to use them)")
        return [found[name] for name in classes], left_out
    check_class_names(list(found), str(root))
    return list(found.values()), ()


def scan_folder(root: str | Path, classes: Sequence[str] | None = None, workers: int = 4,
                show_progress: bool = True) -> ScannedDataset:
    """Find every image under ROOT/<class>/, decode each once to prove it is readable.

    `classes` picks and orders a subset; else ROOT/classes.txt does; else the sub-folders in natural order.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such data directory")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file; expected a folder with one sub-folder of images per class")
    folders, left_out = _class_folders(root, classes)
    found = [(p, folder.name) for folder in folders for p in sorted(folder.rglob("*")) if _is_image_file(p)]
    if not found:
        loose = [p for p in root.iterdir() if _is_image_file(p)]
        hint = " (images lie directly in it: put them in one sub-folder per class)" if loose else ""
        raise DatasetError(f"{root}: no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) in class sub-folders{hint}")
    candidates, unnamed = [], []
    for path, label in found:
        if _encodes(path):
            candidates.append((path, label))
        else:  # the split manifest and report are UTF-8: skip and count rather than fail the whole run
            unnamed.append(SkippedFile(printable_path(path), "file name is not valid UTF-8; rename the file"))
    dataset = check_images(root, tuple(folder.name for folder in folders), candidates, workers, show_progress)
    dataset.skipped = unnamed + dataset.skipped
    dataset.excluded_folders = left_out
    return dataset


def _encodes(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_images(root: Path, names: tuple[str, ...], candidates: list[tuple[Path, str]], workers: int = 4,
                 show_progress: bool = True) -> ScannedDataset:
    """Decode every (path, label) once: readable ones become samples, the rest counted skips. Fails before
    any training when fewer than two classes remain or a class has no readable image."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(progress(pool.map(_check, [p for p, _ in candidates]), total=len(candidates),
                                desc="scan images", enabled=show_progress))
    samples = [Sample(p, label) for (p, label), reason in zip(candidates, reasons) if reason is None]
    skipped = [SkippedFile(str(p), reason) for (p, _), reason in zip(candidates, reasons) if reason is not None]
    dataset = ScannedDataset(root, names, samples, skipped)
    empty = [name for name, count in dataset.counts().items() if count == 0]
    if empty:
        raise DatasetError(f"{root}: class(es) {', '.join(empty)} hold no readable image")
    if len(names) < 2:
        raise DatasetError(f"{root}: found {len(names)} class(es); a classifier needs at least two")
    return dataset
