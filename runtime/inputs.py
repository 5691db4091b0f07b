"""What `predict` is given, as files: paths, folders (searched recursively) and globs (quoted ones too)."""

from __future__ import annotations

import glob
import sys
from pathlib import Path

from .errors import UsageError
from .preprocess import IMAGE_SUFFIXES


def expand_inputs(items) -> list[Path]:
    """Files as given; folders searched recursively for images; globs expanded."""
    found: list[Path] = []
    items = list(items)
    if "-" in items:  # `find ... | edgeship predict MODEL -`: one path per line on standard input
        position = items.index("-")
        items[position:position + 1] = [line.strip() for line in sys.stdin if line.strip()]
    for item in items:
        path = Path(item)
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise UsageError(f"{item}: no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) in this folder")
            found += images
        elif any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise UsageError(f"{item}: the pattern matches no file")
            found += [Path(m) for m in matches]
        else:
            found.append(path)
    return found
