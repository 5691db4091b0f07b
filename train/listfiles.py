"""Food-101-style datasets: `meta/classes.txt`, `meta/train.txt`, `meta/test.txt` listing `class/image_id`
lines, images under `images/class/image_id.jpg`. The official test list becomes the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from edgeship.core.dataset import ScannedDataset, check_class_names, check_images
from edgeship.core.errors import DatasetError
from edgeship.runtime.preprocess import IMAGE_SUFFIXES

META = "meta"
IMAGES = "images"
LISTS = ("train.txt", "test.txt")
SHOWN = 5  # offending lines quoted in an error


def is_list_dataset(root: str | Path) -> bool:
    root = Path(root)
    return (root / META / "classes.txt").is_file() and all((root / META / name).is_file() for name in LISTS)


def _read_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read list file ({exc})") from exc
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _image_path(images: Path, entry: str) -> Path | None:
    """The file an entry names: as written when it has an image suffix, else entry + .jpg (Food-101) or
    another known suffix."""
    if Path(entry).suffix.lower() in IMAGE_SUFFIXES:
        return images / entry if (images / entry).is_file() else None
    for suffix in IMAGE_SUFFIXES:
        if (images / f"{entry}{suffix}").is_file():
            return images / f"{entry}{suffix}"
    return None


def _fail(problem: str, found: list[str]) -> None:
    if found:
        more = f" (and {len(found) - SHOWN} more)" if len(found) > SHOWN else ""
        raise DatasetError(f"{len(found)} list-file line(s) {problem}: {'; '.join(found[:SHOWN])}{more}")


def scan_list_dataset(root: str | Path, classes: Sequence[str] | None = None, max_per_class: int | None = None,
                      show_progress: bool = True) -> tuple[ScannedDataset, set[Path]]:
    """(dataset of every listed, readable image of the chosen classes, the paths from meta/test.txt)."""
    root = Path(root)
    images = (root / IMAGES).resolve()
    listed = [line for _, line in _read_lines(root / META / "classes.txt")]
    check_class_names(listed, str(root / META / "classes.txt"))
    chosen = list(classes) if classes else listed
    check_class_names(chosen, "--classes")
    unknown = [name for name in chosen if name not in listed]
    if unknown:
        raise DatasetError(f"{root / META / 'classes.txt'}: has no class {', '.join(unknown)}")
    wanted = set(chosen)
    candidates: list[tuple[Path, str]] = []
    test: set[Path] = set()
    outside, missing, malformed, repeated = [], [], [], []
    first_seen: dict[Path, str] = {}
    for list_name in LISTS:
        list_path = root / META / list_name
        for number, entry in _read_lines(list_path):
            where = f"{list_path.relative_to(root).as_posix()}:{number} {entry!r}"
            label, _, rest = entry.partition("/")
            if not rest:
                malformed.append(where)
                continue
            if label not in wanted:
                continue
            if Path(entry).is_absolute() or ".." in Path(entry).parts:
                outside.append(where)
                continue
            path = _image_path(images, entry)
            if path is None:
                missing.append(where)
                continue
            if not path.resolve().is_relative_to(images):  # a symlink out of the dataset
                outside.append(where)
                continue
            if path in first_seen:  # in train and test, or twice in one list: it would be counted twice
                repeated.append(f"{where} (also {first_seen[path]})")
                continue
            first_seen[path] = where
            candidates.append((path, label))
            if list_name == "test.txt":
                test.add(path)
    _fail("point outside the dataset root", outside)
    _fail("are not 'class/image_id'", malformed)
    _fail(f"name images missing under {images}", missing)
    _fail("name an image listed before (an image must be in train.txt or test.txt, once)", repeated)
    dataset = check_images(root, tuple(chosen), candidates, show_progress=show_progress)
    return dataset, {s.path for s in dataset.samples if s.path in test}
