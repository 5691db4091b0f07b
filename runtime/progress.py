"""Progress bars for long loops; a plain iterator (or a silent counter) when tqdm is missing or disabled."""

from __future__ import annotations

import os


def _tqdm(enabled: bool):
    if not enabled or os.environ.get("EDGESHIP_PROGRESS", "1") == "0":
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def progress(iterable, total: int | None = None, desc: str = "", enabled: bool = True, unit: str = "it"):
    tqdm = _tqdm(enabled)
    if tqdm is None:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_counter(total: int, desc: str = "", enabled: bool = True, unit: str = "it"):
    """A bar advanced by hand (`update(n)`, `close()`) for work that does not come as one iterable; it shows
    the rate and the ETA, or does nothing when progress is off."""
    tqdm = _tqdm(enabled)
    if tqdm is None:
        return _Silent()
    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
