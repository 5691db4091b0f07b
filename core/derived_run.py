"""A new run made from an existing one (`edgeship outlier`, `edgeship qat`): the same images in the same splits,
its labels and training records, a changed model and no exported artifacts yet. Written under a hidden name beside
OUT and renamed into place only when complete, so an interrupted command leaves no half-run behind that `export`
would take for a real one."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from edgeship.core.layout import RunLayout
from edgeship.core.splits import SplitManifest
from edgeship.runtime.errors import UsageError
from edgeship.runtime.spec import Bundle

COPIED_BESIDE_MODEL = ("labels.txt",)


def check_new_run(out: str | Path) -> Path:
    """OUT as a Path, refused (one line) when something is already there: a derived run never overwrites."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise UsageError(f"{out}: already exists; give a new directory")
    return out


def write_derived_run(layout: RunLayout, bundle: Bundle, out: Path, fill: Callable[[Path], None]) -> None:
    """Write OUT from the run at LAYOUT: labels, training records and the split manifest (its paths made relative to
    the new folder) copied, BUNDLE saved with no artifacts. FILL(new bundle folder) writes the model files and
    updates BUNDLE's provenance before it is saved. Nothing appears at OUT unless every step succeeded."""
    staging = out.with_name(f".{out.name}.partial")  # a sibling: the manifest's relative paths hold after the rename
    _remove(staging)
    try:
        new_bundle = staging / layout.bundle.name
        new_bundle.mkdir(parents=True)
        for name in COPIED_BESIDE_MODEL:
            if (layout.bundle / name).is_file():
                shutil.copy2(layout.bundle / name, new_bundle / name)
        if layout.training.is_dir():
            shutil.copytree(layout.training, staging / layout.training.name)
        manifest = SplitManifest.read(layout.bundle / bundle.split_manifest)
        split_sha = manifest.write(new_bundle / bundle.split_manifest)
        bundle.artifacts = []  # nothing exported from the new model yet
        bundle.provenance.setdefault("split", {})["sha256"] = split_sha
        fill(new_bundle)
        bundle.save(new_bundle)
        staging.rename(check_new_run(out))
    finally:
        _remove(staging)


def _remove(staging: Path) -> None:
    """A left-over staging folder, or a link in its place, removed without following the link anywhere."""
    if staging.is_symlink() or staging.is_file():
        staging.unlink()
    else:
        shutil.rmtree(staging, ignore_errors=True)
