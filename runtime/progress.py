"""Progress bars for long loops; a plain iterator when tqdm is missing or disabled."""

from __future__ import annotations

import os


def progress(iterable, total: int | None = None, desc: str = "", enabled: bool = True, unit: str = "it"):
    if not enabled or os.environ.get("EDGESHIP_PROGRESS", "1") == "0":
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
